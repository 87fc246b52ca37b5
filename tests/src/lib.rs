//! Fixtures for vswitch's system tests: network namespaces, veth pairs and a
//! `vswitchd` process, each a guard that removes what it made when dropped, so a
//! failing assertion still leaves the machine clean. Processes are ended by PID.
//!
//! The tests need root (namespaces, raw sockets, DPDK); without it they print why
//! and pass without checking anything, so `make test` stays usable for a non-root
//! developer. CI runs as root.

pub mod peers;
pub mod tls;
pub use peers::{have_testpmd, tcp_transfer, TestPmd};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when the tests can create namespaces and DPDK ports.
pub fn is_root() -> bool {
    // Read from /proc rather than calling geteuid, to keep this crate free of unsafe.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Returns from the test (passing) with a message when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("SKIP: this system test needs root (network namespaces, DPDK)");
            return;
        }
    };
}

/// A short tag unique to this process and call, for interface and namespace names
/// (Linux interface names have at most 15 characters).
pub fn unique_tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("v{}{}", std::process::id() % 100_000, n)
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `ip ARGS...`.
pub fn ip(args: &[&str]) -> Output {
    run("ip", args)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with loopback up and IPv6 off, so the kernel sends nothing
    /// unprompted (no router solicitations or DAD) and the tests can count packets.
    pub fn new(name: &str) -> Netns {
        ip(&["netns", "add", name]);
        let ns = Netns { name: name.into() };
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; panics if it fails.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs a command inside the namespace and returns its output, failed or not.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("cannot run ip")
    }

    /// Starts a command inside the namespace in the background.
    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot spawn");
        ChildGuard(Some(child))
    }

    /// A counter of an interface in this namespace (`/sys/class/net/IF/statistics/NAME`).
    pub fn if_stat(&self, iface: &str, name: &str) -> u64 {
        let out = self.exec(&["cat", &format!("/sys/class/net/{iface}/statistics/{name}")]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A pod: a namespace whose `eth0` is one end of a veth pair; the other end stays in
/// the root namespace for the switch. Removed on drop.
pub struct VethPod {
    /// The pod's namespace.
    pub ns: Netns,
    /// The host end's name (the switch's af_packet interface).
    pub host_if: String,
}

impl VethPod {
    /// Creates the pod with `mac` and `cidr` on its eth0, set up as DESIGN.md §6 says
    /// af_packet needs: no tx checksum offload in the pod, no GRO on the host end.
    pub fn new(tag: &str, i: u32, mac: &str, cidr: &str) -> VethPod {
        let ns = Netns::new(&format!("{tag}p{i}"));
        let host_if = format!("{tag}h{i}");
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        let pod = VethPod { ns, host_if };
        run(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", pod.host_if),
            ],
        );
        pod.ns.exec(&["ip", "link", "set", "eth0", "address", mac]);
        pod.ns.exec(&["ip", "addr", "add", cidr, "dev", "eth0"]);
        pod.ns.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        run("ethtool", &["-K", &pod.host_if, "gro", "off"]);
        pod.ns.exec(&["ip", "link", "set", "eth0", "up"]);
        ip(&["link", "set", &pod.host_if, "up"]);
        pod
    }
}

impl Drop for VethPod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// A child process ended by PID (SIGTERM, then SIGKILL) on drop.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Waits for the process to exit by itself within `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        let child = self.0.as_mut()?;
        loop {
            if child.try_wait().ok()?.is_some() {
                return self.0.take().and_then(|c| c.wait_with_output().ok());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            terminate(&mut child);
        }
    }
}

fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).output();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Path of a workspace binary built by cargo (`vswitchd`, `vswitch-bench`), next to
/// the test executable's own target directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-hash -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/tmp/vswitch-test-<tag>`.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("vswitch-test-{tag}"));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    /// A path inside.
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `vswitchd`, stopped with SIGTERM by PID on drop.
pub struct Vswitchd {
    /// The process.
    pub child: ChildGuard,
    /// Its stats file.
    pub stats_file: PathBuf,
    log: PathBuf,
    pid: u32,
}

impl Drop for Vswitchd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.0.take() {
            terminate(&mut child);
        }
        // A switch that did not exit by itself (kill -9 in a test) leaves EAL's
        // private runtime directory behind; the tests' configs use the pid prefix.
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/vswitchd{}", self.pid));
    }
}

impl Vswitchd {
    /// Writes `config` to `dir/vswitchd.toml` and starts vswitchd on it. The config
    /// should set `dataplane.stats_file` to `dir/stats.json`; this waits until the
    /// first stats file appears (the switch is forwarding).
    pub fn start(dir: &TempDir, config: &str) -> Vswitchd {
        Self::start_in(dir, config, None)
    }

    /// Like [`start`](Self::start), inside network namespace `netns` (a second
    /// "node"): `ip netns exec` execs the switch, so the PID is the switch's own.
    ///
    /// Two DPDK af_packet processes in one namespace can collide: the PMD derives
    /// its PACKET_FANOUT group id from `pid ^ ifindex`, and fanout groups are per
    /// namespace, so a second process may try to join the first one's group on
    /// another interface and fail to probe. Separate nodes get separate namespaces.
    pub fn start_in(dir: &TempDir, config: &str, netns: Option<&str>) -> Vswitchd {
        Self::start_env(dir, config, netns, &[])
    }

    /// Like [`start_in`](Self::start_in), with extra environment variables for the
    /// switch (test-only hooks such as `VSWITCH_TEST_STALL_WORKER_FILE`).
    pub fn start_env(
        dir: &TempDir,
        config: &str,
        netns: Option<&str>,
        env: &[(&str, &Path)],
    ) -> Vswitchd {
        match netns {
            Some(ns) => Self::start_with(dir, config, &["ip", "netns", "exec", ns], env, &[]),
            None => Self::start_with(dir, config, &[], env, &[]),
        }
    }

    /// Like [`start_env`](Self::start_env), run through `prefix` (a command that
    /// execs the switch, such as `ip netns exec NS` or `setpriv …`, so the PID is
    /// the switch's own), with `args` after `--config FILE`.
    pub fn start_with(
        dir: &TempDir,
        config: &str,
        prefix: &[&str],
        env: &[(&str, &Path)],
        args: &[&str],
    ) -> Vswitchd {
        let cfg = dir.join("vswitchd.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("vswitchd.log");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(workspace_bin("vswitchd"));
                c
            }
            None => Command::new(workspace_bin("vswitchd")),
        };
        let child = cmd
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("spawn vswitchd");
        let pid = child.id();
        let mut v = Vswitchd {
            child: ChildGuard(Some(child)),
            stats_file: dir.join("stats.json"),
            log,
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !v.stats_file.exists() {
            if let Some(out) = v.child.wait_timeout(Duration::from_millis(50)) {
                panic!(
                    "vswitchd exited early ({:?}):\n{}",
                    out.status,
                    v.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd did not start:\n{}",
                v.log_text()
            );
        }
        v
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the switch with SIGTERM, checks it exited cleanly, and returns the final
    /// counters it wrote.
    pub fn stop(mut self) -> serde_json::Value {
        let pid = self.child.pid().to_string();
        run("kill", &["-TERM", &pid]);
        let out = self
            .child
            .wait_timeout(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("vswitchd did not stop on SIGTERM:\n{}", self.log_text()));
        assert!(
            out.status.success(),
            "vswitchd exit {:?}:\n{}",
            out.status,
            self.log_text()
        );
        read_json(&self.stats_file)
    }
}

/// The worker core of a one-worker test switch: 1 when the machine has a second
/// core, else 0.
pub fn worker_core() -> usize {
    if std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        > 1
    {
        1
    } else {
        0
    }
}

/// A configuration with the API on, all of it in `dir`: `[eal]` in memory,
/// `[dataplane]` on `workers` with its stats in `dir/stats.json` every 100 ms,
/// `[control]` with its socket at `dir/ctl.sock` and its state file at
/// `dir/state.json`; then `body`, whose first lines are still `[control]`'s (such
/// as [`allowed_dirs`]) and whose tables follow (ports, the initial state).
pub fn control_config(dir: &TempDir, workers: &[usize], body: &str) -> String {
    format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = {workers:?}
stats_file = "{stats}"
stats_interval_ms = 100
[control]
socket = "{sock}"
state_file = "{state}"
{body}
"#,
        stats = dir.join("stats.json").display(),
        sock = dir.join("ctl.sock").display(),
        state = dir.join("state.json").display(),
    )
}

/// `[control]` lines allowing port paths in `dir/pcap` (pcap files) and
/// `dir/vhost` (vhost-user and virtio-user sockets).
pub fn allowed_dirs(dir: &TempDir) -> String {
    let d = dir.0.display();
    format!("pcap_dirs = [\"{d}/pcap\"]\nsocket_dirs = [\"{d}/vhost\"]\n")
}

/// Bytes as text, for messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `vswitchctl --socket SOCKET ARGS...` (with no `VSWITCH_*` setting from
/// the environment): its output, whatever its exit.
pub fn vswitchctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(workspace_bin("vswitchctl"))
        .env_remove("VSWITCH_SOCKET")
        .env_remove("VSWITCH_TIMEOUT")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run vswitchctl")
}

/// Runs `vswitchctl` with a command that must succeed; its stdout.
pub fn vswitchctl_ok(socket: &Path, args: &[&str]) -> String {
    let out = vswitchctl(socket, args);
    assert!(
        out.status.success(),
        "vswitchctl {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Waits until `vswitchctl show --json` answers on `socket` (the API listens
/// shortly after the first stats file), for 20 s at most.
pub fn wait_for_api(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !vswitchctl(socket, &["show", "--json"]).status.success() {
        assert!(Instant::now() < deadline, "the control API never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gRPC client of the API on `socket`, once it answers `Health` (within 20 s).
pub async fn connect(
    socket: &Path,
) -> control::api::vswitch_client::VswitchClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = control::client::connect_unix(socket).await {
            if c.health(control::api::HealthRequest {}).await.is_ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "the control API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}\n{text}", path.display()))
}

/// The counters of port `name` in a stats document.
pub fn port_stats<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {stats}"))
}

/// A counter as u64.
pub fn counter(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {v}"))
}

/// The repository root (for scripts such as `scripts/tcp_peer.py`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Which kernel tunnel device plays the remote VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelTunnel {
    /// `ip link add … type vxlan` (UDP 4789).
    Vxlan,
    /// `ip link add … type geneve` (UDP 6081).
    Geneve,
}

/// A remote host on the underlay: a namespace whose `eth0` is a veth peer of
/// `host_if` (the switch's uplink, an af_packet port), carrying Linux's own VXLAN or
/// Geneve device `tun0` whose remote end is the switch's VTEP. Removed on drop.
pub struct RemoteVtepHost {
    /// The remote host's namespace.
    pub ns: Netns,
    /// The host end of the underlay veth (the switch's uplink interface).
    pub host_if: String,
}

impl RemoteVtepHost {
    /// Builds the remote host. `underlay_cidr` goes on its eth0 (e.g. `192.0.2.2/24`
    /// or `fd00:1::2/64`), `switch_vtep` is the switch's VTEP address, and
    /// `overlay_mac`/`overlay_cidr` go on the tunnel device.
    pub fn new(
        tag: &str,
        kind: KernelTunnel,
        vni: u32,
        underlay_cidr: &str,
        switch_vtep: &str,
        overlay_mac: &str,
        overlay_cidr: &str,
    ) -> RemoteVtepHost {
        let ns = Netns::new(&format!("{tag}r"));
        let host_if = format!("{tag}u");
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        let host = RemoteVtepHost { ns, host_if };
        let v6 = underlay_cidr.contains(':');
        run(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", host.host_if),
            ],
        );
        if v6 {
            // The underlay itself is IPv6 here; DAD would delay the address by a second.
            host.ns
                .exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
            host.ns
                .exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
            host.ns
                .exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]);
        }
        let mut addr = vec!["ip", "addr", "add", underlay_cidr, "dev", "eth0"];
        if v6 {
            addr.push("nodad");
        }
        host.ns.exec(&addr);
        host.ns.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        run("ethtool", &["-K", &host.host_if, "gro", "off"]);
        host.ns.exec(&["ip", "link", "set", "eth0", "up"]);
        ip(&["link", "set", &host.host_if, "up"]);
        let local = underlay_cidr.split('/').next().unwrap();
        let vni = vni.to_string();
        match kind {
            KernelTunnel::Vxlan => {
                let mut args = vec![
                    "ip",
                    "link",
                    "add",
                    "tun0",
                    "type",
                    "vxlan",
                    "id",
                    &vni,
                    "local",
                    local,
                    "remote",
                    switch_vtep,
                    "dstport",
                    "4789",
                    "dev",
                    "eth0",
                ];
                if v6 {
                    args.extend_from_slice(&["udp6zerocsumtx", "udp6zerocsumrx"]);
                }
                host.ns.exec(&args);
            }
            KernelTunnel::Geneve => {
                let mut args = vec![
                    "ip",
                    "link",
                    "add",
                    "tun0",
                    "type",
                    "geneve",
                    "id",
                    &vni,
                    "remote",
                    switch_vtep,
                ];
                if v6 {
                    args.extend_from_slice(&["udp6zerocsumtx", "udp6zerocsumrx"]);
                }
                host.ns.exec(&args);
            }
        }
        host.ns
            .exec(&["ip", "link", "set", "tun0", "address", overlay_mac]);
        host.ns
            .exec(&["ip", "addr", "add", overlay_cidr, "dev", "tun0"]);
        host.ns.exec(&["ethtool", "-K", "tun0", "tx", "off"]);
        host.ns.exec(&["ip", "link", "set", "tun0", "up"]);
        host
    }
}

impl Drop for RemoteVtepHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// Whether this kernel can create a `geneve` device (CONFIG_GENEVE; some cloud
/// kernels leave it out). Checked in a throwaway namespace.
pub fn kernel_has_geneve() -> bool {
    let ns = Netns::new(&format!("{}g", unique_tag()));
    let out = ns.try_exec(&[
        "ip",
        "link",
        "add",
        "g0",
        "type",
        "geneve",
        "id",
        "1",
        "remote",
        "192.0.2.9",
    ]);
    out.status.success()
}
