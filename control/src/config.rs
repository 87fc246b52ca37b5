//! `vswitchd`'s configuration file: the schema, parsing and whole-file validation.
//!
//! The file is TOML (see `deploy/vswitchd.toml`). Every key is checked: an unknown key,
//! a bad MAC, a dangling port reference or a core out of range is refused with one
//! line that names the offending item, before anything touches DPDK. Checks that need
//! the running system (does the interface exist, is the PMD installed) happen in
//! `vswitchd` when the port profile is checked, still before any port is created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use dataplane::overlay::{NetworkSpec, OverlayConfigError, RemoteEndpointSpec, RouteSpec};
use dataplane::{MacAddr, MAX_PORTS};

use crate::names;

mod conntrack;
mod ops;
pub(crate) mod overlay;
pub mod policy;
pub mod service;

pub use conntrack::ConntrackConfig;

pub use ops::{default_metrics_listen, LogConfig, LogFormat, MetricsConfig};

pub(crate) use overlay::{
    endpoint as type_endpoint, ip as parse_ip, mac as parse_mac, network as type_network,
    remote_endpoint as type_remote_endpoint, route as type_route, underlay as type_underlay,
};
pub use overlay::{EndpointConfig, UnderlayConfig};
pub use overlay::{MAX_ADDRESSES, MAX_SUBNETS};
pub use service::LoadBalancerConfig;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct VswitchConfig {
    /// DPDK EAL settings.
    pub eal: EalConfig,
    /// Workers and buffers.
    pub dataplane: DataplaneConfig,
    /// Ports, in file order (their index is the dataplane's port index).
    pub ports: Vec<PortConfig>,
    /// Explicit port-to-port patches.
    pub patches: Vec<PatchConfig>,
    /// Static MAC table.
    pub l2: Vec<L2Entry>,
    /// `[underlay]`: the uplink and local VTEP of the virtual networks.
    pub underlay: Option<UnderlayConfig>,
    /// `[[network]]`: virtual networks, in file order.
    pub networks: Vec<NetworkSpec>,
    /// `[[endpoint]]`: workloads behind local ports.
    pub endpoints: Vec<EndpointConfig>,
    /// `[[remote_endpoint]]`: workloads behind other nodes' VTEPs.
    pub remote_endpoints: Vec<RemoteEndpointSpec>,
    /// `[[route]]`: static routes in tenants' VRFs.
    pub routes: Vec<RouteSpec>,
    /// `[[service]]`: virtual IPs spread over backends, in file order.
    pub services: Vec<dataplane::pipeline::lb::services::ServiceSpec>,
    /// `[[policy]]`, `[[cluster_policy]]`, `[[policy_endpoint]]`: network
    /// policy, in file order.
    pub policies: policy::Policies,
    /// `[load_balancer]`: the NodePort range (fixed at start).
    pub load_balancer: LoadBalancerConfig,
    /// `[control]`: the gRPC API; absent, the daemon serves no API.
    pub control: Option<ControlConfig>,
    /// `[metrics]`: the Prometheus endpoint; absent, nothing listens.
    pub metrics: Option<MetricsConfig>,
    /// `[log]`: the log output.
    pub log: LogConfig,
    /// `[conntrack]`: the workers' connection tables.
    pub conntrack: ConntrackConfig,
}

/// `[control]`: where the gRPC API listens and where the desired state is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The Unix socket of the API.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Its permissions, in octal (`"0660"`).
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Its group (a name from /etc/group or a number); the daemon's own if unset.
    pub socket_group: Option<String>,
    /// The desired state written by API calls, restored at start.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// Plain TCP is never served: the key exists only to be refused with a clear
    /// error pointing at `[control.tcp]`.
    pub listen_tcp: Option<String>,
    /// `[control.tcp]`: the API on TCP, with mutual TLS only.
    pub tcp: Option<TcpTlsConfig>,
    /// Directories where an API write may name a capture file (`rx_pcap`,
    /// `tx_pcap`); ports of this file are not confined (see [`crate::paths`]).
    #[serde(default = "default_pcap_dirs")]
    pub pcap_dirs: Vec<PathBuf>,
    /// Directories where an API write may name a vhost-user or virtio-user socket.
    #[serde(default = "default_socket_dirs")]
    pub socket_dirs: Vec<PathBuf>,
    /// How long a worker's heartbeat may stand still (and a worker may lag a
    /// published generation) before `Health` and `grpc.health.v1` say not serving,
    /// in milliseconds. Unset: [`ControlConfig::liveness_timeout`]'s default.
    pub liveness_timeout_ms: Option<u64>,
}

/// `[control.tcp]`: a TCP listener that requires client certificates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpTlsConfig {
    /// Address and port, `127.0.0.1:9443` or `[::]:9443`.
    pub listen: std::net::SocketAddr,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA that signs the clients' certificates (PEM).
    pub client_ca: PathBuf,
}

fn default_socket() -> PathBuf {
    "/run/vswitch/vswitchd.sock".into()
}
fn default_socket_mode() -> String {
    "0660".into()
}
fn default_state_file() -> PathBuf {
    "/var/lib/vswitch/state.json".into()
}
pub(crate) fn default_pcap_dirs() -> Vec<PathBuf> {
    vec!["/var/lib/vswitch/pcap".into()]
}
pub(crate) fn default_socket_dirs() -> Vec<PathBuf> {
    vec!["/run/vswitch/vhost".into()]
}

impl ControlConfig {
    /// The default liveness bound, when idle sleeps are short.
    pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);
    /// How many of an idle worker's longest sleeps the liveness bound must cover:
    /// a healthy idle worker beats once per sleep, and the bound must not mistake
    /// a few sleeps (and a busy machine's scheduling delay) for a stuck worker.
    pub const LIVENESS_SLEEPS: u64 = 4;

    /// The socket mode as a number.
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(&self.socket_mode, 8).unwrap_or(0o660)
    }

    /// The liveness bound: `liveness_timeout_ms`, or else 1 s, raised to
    /// [`LIVENESS_SLEEPS`](Self::LIVENESS_SLEEPS) of `dataplane`'s longest idle
    /// sleep so that a default never flags a worker that is only sleeping.
    pub fn liveness_timeout(&self, dataplane: &DataplaneConfig) -> Duration {
        match self.liveness_timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => Self::DEFAULT_LIVENESS_TIMEOUT.max(Duration::from_micros(
                dataplane
                    .idle_sleep_max_us
                    .saturating_mul(Self::LIVENESS_SLEEPS),
            )),
        }
    }
}

/// DPDK Environment Abstraction Layer settings.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EalConfig {
    /// Use hugepages (they must be reserved and mounted); otherwise `--no-huge`.
    pub hugepages: bool,
    /// Memory in MiB (`-m`).
    pub memory_mb: u32,
    /// `--in-memory`: no shared files and no telemetry socket; several instances
    /// coexist.
    pub in_memory: bool,
    /// `--file-prefix`, so several instances coexist, each with its own runtime
    /// directory and telemetry socket (`dpdk-telemetry.py -f <prefix>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_prefix: Option<String>,
    /// The CPU of the main (control) thread.
    pub main_core: usize,
    /// EAL log level (`--log-level`).
    pub log_level: String,
    /// Further EAL arguments, passed as they are.
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            hugepages: false,
            memory_mb: 512,
            in_memory: false,
            file_prefix: None,
            main_core: 0,
            log_level: "notice".into(),
            extra_args: Vec::new(),
        }
    }
}

/// Workers, their idle policy, and packet buffers.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// One worker per listed CPU, pinned to it.
    pub workers: Vec<usize>,
    /// Longest sleep of an idle worker, in microseconds; 0 busy-polls.
    pub idle_sleep_max_us: u64,
    /// Mbufs in the packet pool.
    pub mbufs: u32,
    /// Per-core mempool cache size.
    pub mbuf_cache: u32,
    /// Receive descriptors per queue.
    pub rx_desc: u16,
    /// Transmit descriptors per queue.
    pub tx_desc: u16,
    /// Where to write counters as JSON (periodically and at exit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_file: Option<PathBuf>,
    /// How often to write `stats_file` and log a summary, in milliseconds.
    pub stats_interval_ms: u64,
    /// Entries in each worker's flow table: a power of two from 1024 to 2^24,
    /// or 0 for none (every packet runs the pipeline's stages).
    pub flow_table_entries: usize,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: vec![1],
            idle_sleep_max_us: 250,
            mbufs: 16383,
            mbuf_cache: 256,
            rx_desc: 1024,
            tx_desc: 1024,
            stats_file: None,
            stats_interval_ms: 1000,
            flow_table_entries: dataplane::pipeline::DEFAULT_FLOW_ENTRIES,
        }
    }
}

/// One port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    /// Unique name used by patches, the L2 table and counters.
    pub name: String,
    /// Flooding domain: unknown and broadcast frames go to the other ports of the group.
    pub group: String,
    /// Index into `dataplane.workers` of the worker polling this port; round-robin if unset.
    pub worker: Option<usize>,
    /// MTU to set on the port.
    pub mtu: Option<u16>,
    /// Which DPDK driver, with its settings.
    pub profile: ProfileConfig,
}

/// The DPDK driver of a port and its settings (the `profile` key): the one
/// description of the profiles. The file's `[[port]]` keys and the API's
/// `Port.params` are both read through its serde form (the API's by
/// [`crate::state`], which prints its parameters with the same serde form), and
/// `vswitchd` hands it to the driver. A key left at its default is not printed.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "profile", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProfileConfig {
    /// `net_af_packet` on an existing kernel interface.
    AfPacket {
        /// The kernel interface.
        iface: String,
    },
    /// An existing kernel interface through a packet socket of the switch's
    /// own, with no DPDK device behind it (what kernel pods use: no
    /// `RTE_MAX_ETHPORTS` slot, no PMD probe).
    Kernel {
        /// The kernel interface.
        iface: String,
    },
    /// `net_tap`: the PMD creates a kernel tap interface.
    Tap {
        /// Name of the kernel interface to create.
        iface: String,
        /// Its MAC address.
        #[serde(skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    /// `net_pcap`: replay a capture and/or write one.
    Pcap {
        /// Capture to receive from.
        #[serde(skip_serializing_if = "Option::is_none")]
        rx_pcap: Option<PathBuf>,
        /// Capture to write transmitted frames to.
        #[serde(skip_serializing_if = "Option::is_none")]
        tx_pcap: Option<PathBuf>,
        /// Kernel interface to receive from with libpcap.
        #[serde(skip_serializing_if = "Option::is_none")]
        rx_iface: Option<String>,
        /// Kernel interface to send to with libpcap.
        #[serde(skip_serializing_if = "Option::is_none")]
        tx_iface: Option<String>,
        /// Replay `rx_pcap` forever from memory (the benchmark generator).
        #[serde(default, skip_serializing_if = "is_false")]
        infinite_rx: bool,
    },
    /// `net_null`: a sink (and, with `no_rx = false`, a source of empty frames).
    Null {
        /// Receive nothing.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        no_rx: bool,
        /// Frame size generated on rx.
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<u32>,
    },
    /// `net_ring`: a port whose transmit loops back to its receive.
    Ring {},
    /// `net_vhost`: a vhost-user socket for a DPDK pod.
    VhostUser {
        /// Socket path.
        path: PathBuf,
        /// Connect to the pod's socket instead of listening.
        #[serde(default, skip_serializing_if = "is_false")]
        client: bool,
        /// Queue pairs.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        queues: u16,
        /// Owner of the socket the switch creates (server mode): a user name or
        /// uid ([`crate::socket_access`]).
        #[serde(
            default,
            deserialize_with = "text_or_int",
            skip_serializing_if = "Option::is_none"
        )]
        socket_owner: Option<String>,
        /// Its group: a group name or gid.
        #[serde(
            default,
            deserialize_with = "text_or_int",
            skip_serializing_if = "Option::is_none"
        )]
        socket_group: Option<String>,
        /// Its mode, octal (`"0660"`).
        #[serde(
            default,
            deserialize_with = "text_or_int",
            skip_serializing_if = "Option::is_none"
        )]
        socket_mode: Option<String>,
    },
    /// `net_virtio_user`: the DPDK side of a vhost-user socket (or vhost-kernel).
    VirtioUser {
        /// Socket path.
        path: PathBuf,
        /// Listen instead of connecting.
        #[serde(default, skip_serializing_if = "is_false")]
        server: bool,
        /// Queue pairs.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        queues: u16,
        /// MAC address.
        #[serde(skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    /// NVIDIA mlx5 (ConnectX/BlueField) PCI device with optional representors.
    Mlx5 {
        /// PCI address, `0000:03:00.0`.
        pci: String,
        /// One representor (`pf0vf3`, `[65535]`): each is a port of its own.
        #[serde(skip_serializing_if = "Option::is_none")]
        representors: Option<String>,
    },
}

impl ProfileConfig {
    /// What the port takes for itself and no other port may share: the kernel
    /// interface af_packet binds or tap creates, the vhost-user/virtio-user
    /// socket, the capture a pcap port writes, the PCI device; with its key. Two
    /// af_packet sockets on one interface would each see every frame the pod
    /// sends (and the newer took the pod's traffic).
    /// `(key, kind, value)`.
    pub fn device(&self) -> Option<(&'static str, &'static str, String)> {
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        match self {
            ProfileConfig::AfPacket { iface }
            | ProfileConfig::Kernel { iface }
            | ProfileConfig::Tap { iface, .. } => Some(("iface", "interface", iface.clone())),
            ProfileConfig::Pcap {
                tx_pcap: Some(p), ..
            } => Some(("tx_pcap", "file", path(p))),
            ProfileConfig::VhostUser { path: p, .. }
            | ProfileConfig::VirtioUser { path: p, .. } => Some(("path", "socket", path(p))),
            ProfileConfig::Mlx5 { pci, representors } => Some((
                "pci",
                "device",
                format!("{pci} {}", representors.as_deref().unwrap_or("")),
            )),
            _ => None,
        }
    }

    /// The owner, group and mode a `vhost_user` port's socket is given, resolved;
    /// empty for other profiles. In client mode the socket is the peer's, so
    /// asking for any of them is an error.
    ///
    /// # Errors
    /// `(key, reason)`: a value that does not resolve or is out of bounds.
    pub fn socket_access(
        &self,
    ) -> Result<crate::socket_access::SocketAccess, (&'static str, String)> {
        let ProfileConfig::VhostUser {
            client,
            socket_owner,
            socket_group,
            socket_mode,
            ..
        } = self
        else {
            return Ok(Default::default());
        };
        if *client {
            let asked = [
                ("socket_owner", socket_owner),
                ("socket_group", socket_group),
                ("socket_mode", socket_mode),
            ];
            if let Some((key, _)) = asked.iter().find(|(_, v)| v.is_some()) {
                return Err((
                    key,
                    "in client mode the socket is the peer's: its owner, group and mode are set where it is created".into(),
                ));
            }
        }
        crate::socket_access::SocketAccess::resolve(
            socket_owner.as_deref(),
            socket_group.as_deref(),
            socket_mode.as_deref(),
        )
    }
}

/// A text key that may arrive as a bare number: `socket_group = 1000` in the
/// file, and the API's `params` read `"1000"` or `"660"` as integers. The digits
/// are kept as written (a mode `660` stays the text `660`).
fn text_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct TextOrInt;
    impl serde::de::Visitor<'_> for TextOrInt {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a name, an id or an octal mode, as a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(TextOrInt).map(Some)
}

fn yes() -> bool {
    true
}
fn one() -> u16 {
    1
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_one(n: &u16) -> bool {
    *n == 1
}

/// `[[patch]]`: everything that arrives on `from` leaves on `to`, whatever its
/// address. Its schema is the API's message (see [`crate::model`]).
pub type PatchConfig = crate::api::Patch;

/// A static MAC table entry.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Entry {
    /// Destination MAC.
    pub mac: MacAddr,
    /// Port name.
    pub port: String,
}

/// Why a configuration file was refused. Each message names the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("{0}")]
    Syntax(String),
    /// A port without a name.
    #[error("port #{index}: missing key `name`")]
    MissingPortName {
        /// Position of the port in the file, from 0.
        index: usize,
    },
    /// Two ports share a name.
    #[error("port {0:?}: duplicate port name")]
    DuplicatePort(String),
    /// A name outside the grammar of [`names`](crate::names) (the port, network,
    /// tenant or group itself, or a reference to one).
    #[error("{field}: {reason}")]
    BadName {
        /// The item and key holding it, `port #2: name`, `network "blue": tenant`.
        field: String,
        /// What is wrong, quoting a prefix of the name.
        reason: String,
    },
    /// No worker core listed.
    #[error("dataplane.workers: at least one worker core is needed")]
    NoWorkers,
    /// A worker core listed twice.
    #[error("dataplane.workers: core {0} listed twice")]
    DuplicateCore(usize),
    /// A core this machine does not have.
    #[error("{field}: core {core} is out of range (this machine has cores 0-{max})")]
    CoreOutOfRange {
        /// The key holding it.
        field: String,
        /// The core asked for.
        core: usize,
        /// The highest core available.
        max: usize,
    },
    /// A port pinned to a worker index that does not exist.
    #[error("port {port:?}: worker {worker} does not exist (dataplane.workers has {count})")]
    WorkerOutOfRange {
        /// Port name.
        port: String,
        /// Worker index asked for.
        worker: usize,
        /// Number of workers.
        count: usize,
    },
    /// A bad MAC address.
    #[error("{field}: {source}")]
    BadMac {
        /// The key holding it.
        field: String,
        /// The parse error.
        source: dataplane::ethernet::MacParseError,
    },
    /// A reference to a port that is not defined.
    #[error("{field}: no port named {name:?}")]
    UnknownPort {
        /// The key holding the reference.
        field: String,
        /// The missing name.
        name: String,
    },
    /// A port patched to itself.
    #[error("patch {0:?} -> {0:?}: a port cannot be patched to itself")]
    SelfPatch(String),
    /// A port patched to two places.
    #[error("patch from {0:?}: the port is patched twice")]
    DuplicatePatch(String),
    /// A MAC listed twice in the L2 table.
    #[error("l2: MAC {0} listed twice")]
    DuplicateMac(MacAddr),
    /// A numeric setting outside its range.
    #[error("{field}: {reason}")]
    OutOfRange {
        /// The key.
        field: String,
        /// What is allowed.
        reason: String,
    },
    /// An IP address or prefix that does not parse.
    #[error("{field}: invalid {kind} {}", names::quote(.value))]
    BadAddress {
        /// The item and key holding it.
        field: String,
        /// `IP address` or `prefix (address/length)`.
        kind: &'static str,
        /// The text given.
        value: String,
    },
    /// A VNI that does not fit 24 bits.
    #[error("network {network:?}: vni {vni} is out of range (0-16777215)")]
    VniOutOfRange {
        /// The network.
        network: String,
        /// The VNI given.
        vni: i64,
    },
    /// An encapsulation other than `vxlan` and `geneve`.
    #[error("network {network:?}: encap {encap:?} is not one of \"vxlan\", \"geneve\"")]
    UnknownEncap {
        /// The network.
        network: String,
        /// The encapsulation given.
        encap: String,
    },
    /// A route with neither or both of `next_hop` and `blackhole = true`.
    #[error("{route}: give exactly one of `next_hop = {{ network, ip }}` and `blackhole = true`")]
    RouteTarget {
        /// The route, `route #0 (0.0.0.0/0)`.
        route: String,
    },
    /// An overlay item names a port that is not defined.
    #[error("{field} {name:?} is not a [[port]]")]
    NotAPort {
        /// The item and key holding the reference.
        field: String,
        /// The missing name.
        name: String,
    },
    /// An endpoint behind the underlay uplink.
    #[error("{endpoint}: port {port:?} is the underlay uplink")]
    EndpointOnUplink {
        /// The endpoint, `endpoint #2 (network "blue")`.
        endpoint: String,
        /// The port.
        port: String,
    },
    /// Endpoints of two networks behind one port.
    #[error("{endpoint}: port {port:?} already carries endpoints of network {first:?}")]
    PortInTwoNetworks {
        /// The endpoint, `endpoint #2 (network "blue")`.
        endpoint: String,
        /// The port.
        port: String,
        /// The network seen first on it.
        first: String,
    },
    /// A patch or MAC entry on a port that belongs to the overlay.
    #[error(
        "{field}: port {port:?} belongs to the overlay (underlay uplink or endpoint port), \
         which the L2 switch does not forward"
    )]
    OverlayPort {
        /// The key holding the reference.
        field: String,
        /// The port.
        port: String,
    },
    /// The overlay as a whole is inconsistent (the dataplane builder's verdict,
    /// naming the network, endpoint, route or underlay concerned).
    #[error("{}", one_line(&.0.to_string()))]
    Overlay(OverlayConfigError),
}

/// `text` with any line breaks turned into spaces: every error is one line.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    eal: EalConfig,
    #[serde(default)]
    dataplane: DataplaneConfig,
    #[serde(default)]
    port: Vec<toml::Table>,
    #[serde(default)]
    patch: Vec<PatchConfig>,
    #[serde(default)]
    l2: Vec<crate::api::L2Entry>,
    underlay: Option<toml::Table>,
    #[serde(default)]
    network: Vec<toml::Table>,
    #[serde(default)]
    endpoint: Vec<toml::Table>,
    #[serde(default)]
    remote_endpoint: Vec<toml::Table>,
    #[serde(default)]
    route: Vec<toml::Table>,
    #[serde(default)]
    service: Vec<toml::Table>,
    #[serde(default)]
    policy: Vec<toml::Table>,
    #[serde(default)]
    cluster_policy: Vec<toml::Table>,
    #[serde(default)]
    policy_endpoint: Vec<toml::Table>,
    #[serde(default)]
    load_balancer: LoadBalancerConfig,
    control: Option<ControlConfig>,
    metrics: Option<MetricsConfig>,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    conntrack: ConntrackConfig,
}

fn syntax(e: impl std::fmt::Display) -> ConfigError {
    // toml's messages span several lines (a source excerpt); operators get one line.
    let text = e.to_string();
    let one_line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(" ");
    ConfigError::Syntax(one_line)
}

impl VswitchConfig {
    /// Parses and validates a configuration file's text. `cores` is the number of
    /// CPUs this process may use (core ids `0..cores`).
    ///
    /// # Errors
    /// The first problem found, naming the key or item.
    pub fn parse(text: &str, cores: usize) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(syntax)?;
        Self::from_raw(raw, cores)
    }

    /// [`parse`](Self::parse) for a document that is already TOML values (the API's
    /// desired state): the same schema, checks and errors, without printing and
    /// re-reading the text (which cost two thirds of a write at 10k endpoints).
    ///
    /// # Errors
    /// The first problem found, naming the key or item.
    pub fn from_table(doc: toml::Table, cores: usize) -> Result<Self, ConfigError> {
        let raw = RawFile::deserialize(toml::Value::Table(doc)).map_err(syntax)?;
        Self::from_raw(raw, cores)
    }

    fn from_raw(raw: RawFile, cores: usize) -> Result<Self, ConfigError> {
        let mut ports = Vec::with_capacity(raw.port.len());
        for (index, mut table) in raw.port.into_iter().enumerate() {
            let name = match table.remove("name") {
                Some(toml::Value::String(s)) => s,
                Some(_) => {
                    return Err(ConfigError::Syntax(format!(
                        "port #{index}: `name` must be a string"
                    )))
                }
                None => return Err(ConfigError::MissingPortName { index }),
            };
            names::check_with(&name, names::MAX_PORT_NAME).map_err(|reason| {
                ConfigError::BadName {
                    field: format!("port #{index}: name"),
                    reason,
                }
            })?;
            let group = match table.remove("group") {
                Some(toml::Value::String(s)) => s,
                None => "default".to_owned(),
                Some(_) => {
                    return Err(ConfigError::Syntax(format!(
                        "port {name:?}: `group` must be a string"
                    )))
                }
            };
            let worker = take_uint(&mut table, "worker", &name)?.map(|w| w as usize);
            let mtu = take_uint(&mut table, "mtu", &name)?
                .map(|m| {
                    u16::try_from(m).map_err(|_| ConfigError::OutOfRange {
                        field: format!("port {name:?}: mtu"),
                        reason: "must be at most 65535".into(),
                    })
                })
                .transpose()?;
            if !table.contains_key("profile") {
                return Err(ConfigError::Syntax(format!(
                    "port {name:?}: missing key `profile` (af_packet, kernel, tap, pcap, null, ring, vhost_user, virtio_user, mlx5)"
                )));
            }
            let profile = ProfileConfig::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| profile_error(&name, &table, &e))?;
            profile
                .socket_access()
                .map_err(|(key, reason)| ConfigError::OutOfRange {
                    field: format!("port {name:?}: {key}"),
                    reason,
                })?;
            ports.push(PortConfig {
                name,
                group,
                worker,
                mtu,
                profile,
            });
        }
        let mut l2 = Vec::with_capacity(raw.l2.len());
        for (i, e) in raw.l2.into_iter().enumerate() {
            let mac = e.mac.parse().map_err(|source| ConfigError::BadMac {
                field: format!("l2[{i}].mac"),
                source,
            })?;
            l2.push(L2Entry { mac, port: e.port });
        }
        let overlay = overlay::RawSections {
            underlay: raw.underlay,
            network: raw.network,
            endpoint: raw.endpoint,
            remote_endpoint: raw.remote_endpoint,
            route: raw.route,
        }
        .parse()?;
        raw.load_balancer.validate()?;
        let mut services = Vec::with_capacity(raw.service.len());
        for (i, t) in raw.service.into_iter().enumerate() {
            let item = service::label(i, &t);
            let r: crate::api::Service = overlay::typed(&item, t)?;
            // The name first: the other errors quote it.
            names::check(&r.name).map_err(|reason| ConfigError::BadName {
                field: format!("service #{i}: name"),
                reason,
            })?;
            services.push(service::service(&item, &r, &raw.load_balancer)?);
        }
        let mut policies = policy::Policies::default();
        // The name first in each: the other errors quote it.
        let named = |section: &str, i: usize, name: &str| {
            policy::check_name(name).map_err(|reason| ConfigError::BadName {
                field: format!("{section} #{i}: name"),
                reason,
            })
        };
        for (i, t) in raw.policy.into_iter().enumerate() {
            let item = policy::label("policy", i, &t);
            let r: crate::api::NetworkPolicy = overlay::typed(&item, t)?;
            named("policy", i, &r.name)?;
            let item = policy::policy_label(&r.name);
            policies.network.push(policy::network_policy(&item, &r)?);
        }
        for (i, t) in raw.cluster_policy.into_iter().enumerate() {
            let item = policy::label("cluster_policy", i, &t);
            let r: crate::api::ClusterPolicy = overlay::typed(&item, t)?;
            named("cluster_policy", i, &r.name)?;
            let item = policy::cluster_label(&r.name);
            policies.cluster.push(policy::cluster_policy(&item, &r)?);
        }
        for (i, t) in raw.policy_endpoint.into_iter().enumerate() {
            let item = policy::label("policy_endpoint", i, &t);
            let r: crate::api::PolicyEndpoint = overlay::typed(&item, t)?;
            named("policy_endpoint", i, &r.name)?;
            let item = policy::endpoint_label(&r.name);
            policies.endpoints.push(policy::policy_endpoint(&item, &r)?);
        }
        let cfg = VswitchConfig {
            eal: raw.eal,
            dataplane: raw.dataplane,
            ports,
            patches: raw.patch,
            l2,
            underlay: overlay.underlay,
            networks: overlay.networks,
            endpoints: overlay.endpoints,
            remote_endpoints: overlay.remote_endpoints,
            routes: overlay.routes,
            services,
            policies,
            load_balancer: raw.load_balancer,
            control: raw.control,
            metrics: raw.metrics,
            log: raw.log,
            conntrack: raw.conntrack,
        };
        cfg.validate(cores)?;
        Ok(cfg)
    }

    /// Checks the whole configuration for consistency, the overlay included: its
    /// port references by name, then the dataplane's overlay builder over all of it
    /// (the snapshot is thrown away; [`compile::pipeline`](crate::compile::pipeline)
    /// builds the one to publish).
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self, cores: usize) -> Result<(), ConfigError> {
        self.conntrack.validate()?;
        // A zone is a network: a connection routed between two networks would
        // have its two directions enter by two zones, and the second would
        // be refused (or, its network untracked, the first would miss the
        // answer and refuse the next packet). Until zones follow routing, a
        // tracked network is the only one of its tenant.
        for n in self.networks.iter().filter(|n| n.conntrack) {
            if let Some(m) = self
                .networks
                .iter()
                .find(|m| m.tenant == n.tenant && m.name != n.name)
            {
                return Err(ConfigError::OutOfRange {
                    field: format!("network {:?}: conntrack", n.name),
                    reason: format!(
                        "tenant {:?} has another network ({:?}): connections routed between networks would be tracked in two zones; a tracked network must be its tenant's only one for now",
                        n.tenant, m.name
                    ),
                });
            }
        }
        if let Some(m) = &self.metrics {
            m.validate()?;
        }
        if let Some(c) = &self.control {
            if c.listen_tcp.is_some() {
                return Err(ConfigError::OutOfRange {
                    field: "control.listen_tcp".into(),
                    reason: "plain TCP is refused: use [control.tcp] with listen, cert, key and client_ca (mutual TLS)".into(),
                });
            }
            match u32::from_str_radix(&c.socket_mode, 8) {
                // Whoever can connect can add ports and change forwarding: "other"
                // must get nothing, or every local user would hold that power.
                Ok(m) if m <= 0o777 && m & 0o007 != 0 => {
                    return Err(ConfigError::OutOfRange {
                        field: "control.socket_mode".into(),
                        reason: format!(
                            "{} gives other users access to the API; use a group (socket_group) and a mode like \"0660\"",
                            crate::paths::quoted(&c.socket_mode)
                        ),
                    })
                }
                Ok(m) if m <= 0o777 => {}
                _ => {
                    return Err(ConfigError::OutOfRange {
                        field: "control.socket_mode".into(),
                        reason: format!(
                            "{} is not an octal mode like \"0660\"",
                            crate::paths::quoted(&c.socket_mode)
                        ),
                    })
                }
            }
            crate::paths::validate_allowed_dirs(c)?;
            if let Some(ms) = c.liveness_timeout_ms {
                // A bound shorter than a few idle sleeps would call sleeping workers
                // stuck; one under 100 ms is below what the 200 ms poll can judge.
                let floor_us = self
                    .dataplane
                    .idle_sleep_max_us
                    .saturating_mul(ControlConfig::LIVENESS_SLEEPS)
                    .max(100_000);
                if ms.saturating_mul(1000) < floor_us || ms > 3_600_000 {
                    return Err(ConfigError::OutOfRange {
                        field: "control.liveness_timeout_ms".into(),
                        reason: format!(
                            "{ms} is not between {} ({} × dataplane.idle_sleep_max_us, at least 100) and 3600000",
                            floor_us.div_ceil(1000),
                            ControlConfig::LIVENESS_SLEEPS
                        ),
                    });
                }
            }
        }
        let max = cores.saturating_sub(1);
        let dp = &self.dataplane;
        if dp.workers.is_empty() {
            return Err(ConfigError::NoWorkers);
        }
        let mut seen = BTreeSet::new();
        for &core in &dp.workers {
            if core >= cores {
                return Err(ConfigError::CoreOutOfRange {
                    field: "dataplane.workers".into(),
                    core,
                    max,
                });
            }
            if !seen.insert(core) {
                return Err(ConfigError::DuplicateCore(core));
            }
        }
        if self.eal.main_core >= cores {
            return Err(ConfigError::CoreOutOfRange {
                field: "eal.main_core".into(),
                core: self.eal.main_core,
                max,
            });
        }
        if self.eal.memory_mb < 64 {
            return Err(ConfigError::OutOfRange {
                field: "eal.memory_mb".into(),
                reason: "at least 64 MiB".into(),
            });
        }
        if dp.mbufs < 1024 {
            return Err(ConfigError::OutOfRange {
                field: "dataplane.mbufs".into(),
                reason: "at least 1024".into(),
            });
        }
        let flows = dp.flow_table_entries;
        if flows != 0 && !(flows.is_power_of_two() && (1 << 10..=1 << 24).contains(&flows)) {
            return Err(ConfigError::OutOfRange {
                field: "dataplane.flow_table_entries".into(),
                reason: "0 (no flow table) or a power of two from 1024 to 16777216".into(),
            });
        }
        if dp.mbuf_cache > 512 || dp.mbuf_cache as u64 * 2 > dp.mbufs as u64 {
            return Err(ConfigError::OutOfRange {
                field: "dataplane.mbuf_cache".into(),
                reason: "at most 512 and at most half of dataplane.mbufs".into(),
            });
        }
        for (field, v) in [
            ("dataplane.rx_desc", dp.rx_desc),
            ("dataplane.tx_desc", dp.tx_desc),
        ] {
            if !(64..=4096).contains(&v) {
                return Err(ConfigError::OutOfRange {
                    field: field.into(),
                    reason: "between 64 and 4096".into(),
                });
            }
        }
        if self.ports.len() > MAX_PORTS {
            return Err(ConfigError::OutOfRange {
                field: "port".into(),
                reason: format!("{} ports, at most {MAX_PORTS}", self.ports.len()),
            });
        }
        self.check_names()?;
        let mut names = BTreeMap::new();
        let mut devices: BTreeMap<(&str, String), &str> = BTreeMap::new();
        for (i, p) in self.ports.iter().enumerate() {
            if names.insert(p.name.as_str(), i).is_some() {
                return Err(ConfigError::DuplicatePort(p.name.clone()));
            }
            if let Some(w) = p.worker {
                if w >= dp.workers.len() {
                    return Err(ConfigError::WorkerOutOfRange {
                        port: p.name.clone(),
                        worker: w,
                        count: dp.workers.len(),
                    });
                }
            }
            let mac = match &p.profile {
                ProfileConfig::Tap { mac, .. } | ProfileConfig::VirtioUser { mac, .. } => {
                    mac.as_deref()
                }
                _ => None,
            };
            if let Some(mac) = mac {
                mac.parse::<MacAddr>()
                    .map_err(|source| ConfigError::BadMac {
                        field: format!("port {:?}: mac", p.name),
                        source,
                    })?;
            }
            if let Some((key, kind, what)) = p.profile.device() {
                if let Some(first) = devices.insert((kind, what.clone()), &p.name) {
                    return Err(ConfigError::OutOfRange {
                        field: format!("port {:?}: {key}", p.name),
                        reason: format!(
                            "{kind} {} is already port {first:?}'s: two ports on one device \
                             would split or steal its traffic",
                            names::quote(&what)
                        ),
                    });
                }
            }
        }
        let mut patched = BTreeSet::new();
        for p in &self.patches {
            for (field, name) in [("patch.from", &p.from), ("patch.to", &p.to)] {
                if !names.contains_key(name.as_str()) {
                    return Err(ConfigError::UnknownPort {
                        field: field.into(),
                        name: name.clone(),
                    });
                }
            }
            if p.from == p.to {
                return Err(ConfigError::SelfPatch(p.from.clone()));
            }
            if !patched.insert(p.from.as_str()) {
                return Err(ConfigError::DuplicatePatch(p.from.clone()));
            }
        }
        let mut macs = BTreeSet::new();
        for (i, e) in self.l2.iter().enumerate() {
            if !names.contains_key(e.port.as_str()) {
                return Err(ConfigError::UnknownPort {
                    field: format!("l2[{i}].port"),
                    name: e.port.clone(),
                });
            }
            if !macs.insert(e.mac) {
                return Err(ConfigError::DuplicateMac(e.mac));
            }
        }
        self.validate_overlay(&names)?;
        self.validate_services()?;
        self.validate_policies()
    }

    /// Every name and every reference by name against the one grammar
    /// ([`names`](crate::names)), before any other check can quote one.
    fn check_names(&self) -> Result<(), ConfigError> {
        let bad = |field: String| move |reason| ConfigError::BadName { field, reason };
        for (i, p) in self.ports.iter().enumerate() {
            names::check_with(&p.name, names::MAX_PORT_NAME)
                .map_err(bad(format!("port #{i}: name")))?;
            names::check(&p.group).map_err(bad(format!("port {:?}: group", p.name)))?;
            // The switch opens this interface itself: its name follows the
            // grammar, at most IFNAMSIZ - 1 bytes.
            if let ProfileConfig::Kernel { iface } = &p.profile {
                names::check_with(iface, 15).map_err(bad(format!("port {:?}: iface", p.name)))?;
            }
        }
        for p in &self.patches {
            names::check(&p.from).map_err(bad("patch: from".into()))?;
            names::check(&p.to).map_err(bad(format!("patch from {:?}: to", p.from)))?;
        }
        for e in &self.l2 {
            names::check(&e.port).map_err(bad(format!("l2 {}: port", e.mac)))?;
        }
        if let Some(u) = &self.underlay {
            names::check(&u.uplink).map_err(bad("underlay: uplink".into()))?;
        }
        for (i, n) in self.networks.iter().enumerate() {
            names::check(&n.name).map_err(bad(format!("network #{i}: name")))?;
            names::check(&n.tenant).map_err(bad(format!("network {:?}: tenant", n.name)))?;
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let item = format!("endpoint #{i}");
            names::check(&e.network).map_err(bad(format!("{item}: network")))?;
            names::check(&e.port).map_err(bad(format!("{}: port", e.label(i))))?;
        }
        for (i, e) in self.remote_endpoints.iter().enumerate() {
            names::check(&e.network).map_err(bad(format!("remote_endpoint #{i}: network")))?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            let item = format!("route #{i} ({})", r.prefix);
            names::check(&r.tenant).map_err(bad(format!("{item}: tenant")))?;
            if let dataplane::overlay::RouteTarget::NextHop { network, .. } = &r.target {
                names::check(network).map_err(bad(format!("{item}: next_hop.network")))?;
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            names::check(&s.name).map_err(bad(format!("service #{i}: name")))?;
            names::check(&s.network).map_err(bad(format!("service {:?}: network", s.name)))?;
        }
        Ok(())
    }

    /// The worker index polling each port: as configured, otherwise round-robin.
    pub fn port_workers(&self) -> Vec<usize> {
        let n = self.dataplane.workers.len();
        let mut next = 0;
        self.ports
            .iter()
            .map(|p| {
                p.worker.unwrap_or_else(|| {
                    let w = next % n;
                    next += 1;
                    w
                })
            })
            .collect()
    }
}

/// The error of port `name`'s profile table `table` (what is left once `name`,
/// `group`, `worker` and `mtu` are taken), naming the key at fault and quoting
/// no more of the caller's keys and values than [`names::quote`] does: serde's
/// errors on a TOML value name no key, and echo a bad key or value whole.
fn profile_error(name: &str, table: &toml::Table, e: &impl std::fmt::Display) -> ConfigError {
    let mut reason = match syntax(e) {
        ConfigError::Syntax(s) => s,
        other => other.to_string(),
    };
    for (k, v) in table {
        if k.chars().count() > names::QUOTE_CHARS {
            reason = reason.replace(&format!("`{k}`"), &names::quote(k));
        }
        if let toml::Value::String(v) = v {
            if v.chars().count() > names::QUOTE_CHARS {
                reason = reason
                    .replace(&format!("{v:?}"), &names::quote(v))
                    .replace(&format!("`{v}`"), &names::quote(v));
            }
        }
    }
    // The key at fault: the first whose removal makes the table valid (a bad
    // optional value), else a required one whose removal only makes it missing.
    let without = |k: &str| {
        let mut t = table.clone();
        t.remove(k);
        ProfileConfig::deserialize(toml::Value::Table(t)).err()
    };
    let keys = || table.keys().filter(|k| k.as_str() != "profile");
    let culprit = keys().find(|k| without(k).is_none()).or_else(|| {
        keys().find(|k| {
            without(k).is_some_and(|e| e.to_string().trim() == format!("missing field `{k}`"))
        })
    });
    match culprit {
        Some(k) if !reason.contains(&format!("`{k}`")) && !reason.contains(&names::quote(k)) => {
            let k = if k.chars().count() > names::QUOTE_CHARS {
                names::quote(k)
            } else {
                k.clone()
            };
            ConfigError::Syntax(format!("port {}: {k}: {reason}", names::quote(name)))
        }
        _ => ConfigError::Syntax(format!("port {}: {reason}", names::quote(name))),
    }
}

fn take_uint(table: &mut toml::Table, key: &str, port: &str) -> Result<Option<u64>, ConfigError> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if i >= 0 => Ok(Some(i as u64)),
        Some(_) => Err(ConfigError::Syntax(format!(
            "port {port:?}: `{key}` must be a non-negative integer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[eal]
memory_mb = 256
in_memory = true

[dataplane]
workers = [1]
idle_sleep_max_us = 100

[[port]]
name = "pod1"
profile = "af_packet"
iface = "veth1"

[[port]]
name = "pod2"
profile = "tap"
iface = "tap-pod2"
mac = "02:00:00:00:00:02"
group = "default"

[[port]]
name = "in"
profile = "pcap"
rx_pcap = "/tmp/in.pcap"
infinite_rx = true
group = "bench"

[[port]]
name = "sink"
profile = "null"
group = "bench"

[[patch]]
from = "in"
to = "sink"

[[l2]]
mac = "02:00:00:00:00:01"
port = "pod1"
"#;

    #[test]
    fn parses_the_example() {
        let c = VswitchConfig::parse(GOOD, 2).unwrap();
        assert_eq!(c.ports.len(), 4);
        assert_eq!(
            c.ports[0].profile,
            ProfileConfig::AfPacket {
                iface: "veth1".into()
            }
        );
        assert_eq!(c.ports[2].group, "bench");
        assert_eq!(
            c.ports[3].profile,
            ProfileConfig::Null {
                no_rx: true,
                size: None
            }
        );
        assert_eq!(c.l2[0].mac.0, [2, 0, 0, 0, 0, 1]);
        assert_eq!(c.port_workers(), vec![0, 0, 0, 0]);
        assert!(c.eal.in_memory);
    }

    /// Ports plus every overlay section, each key used at least once.
    const OVERLAY: &str = r#"
[[port]]
name = "uplink"
profile = "af_packet"
iface = "vsw-uplink"

[[port]]
name = "pod1"
profile = "af_packet"
iface = "vsw-pod1"

[[port]]
name = "pod2"
profile = "af_packet"
iface = "vsw-pod2"

[[port]]
name = "plain"
profile = "null"

[underlay]
uplink = "uplink"
local_vtep_ip = "192.0.2.1"
local_mac = "02:00:00:00:ff:01"
mtu = 1550
on_link = "192.0.2.0/24"
gateway = "192.0.2.254"

[[network]]
name = "blue"
vni = 100
encap = "vxlan"
tenant = "t1"
subnets = ["10.1.0.0/24", "fd00:1::/64"]
gateway_ips = ["10.1.0.1", "fd00:1::1"]
gateway_mac = "02:00:00:00:aa:01"
flood_unknown = false
vteps = ["192.0.2.2"]

[[network]]
name = "green"
vni = 200
encap = "geneve"
tenant = "t1"
subnets = ["10.2.0.0/24"]
gateway_ips = ["10.2.0.1"]
gateway_mac = "02:00:00:00:aa:02"
flood_unknown = true
vteps = ["198.51.100.7"]

[[endpoint]]
network = "blue"
mac = "02:00:00:00:01:01"
ips = ["10.1.0.2", "fd00:1::2"]
port = "pod1"

[[endpoint]]
network = "green"
mac = "02:00:00:00:01:02"
ips = ["10.2.0.2"]
port = "pod2"

[[remote_endpoint]]
network = "blue"
mac = "02:00:00:00:02:01"
ips = ["10.1.0.3"]
vtep = "192.0.2.2"

[[remote_endpoint]]
network = "blue"
mac = "02:00:00:00:02:02"
ips = ["10.1.0.254"]
vtep = "192.0.2.2"

[[route]]
tenant = "t1"
prefix = "0.0.0.0/0"
next_hop = { network = "blue", ip = "10.1.0.254" }

[[route]]
tenant = "t1"
prefix = "10.99.0.0/16"
blackhole = true
"#;

    #[test]
    fn parses_the_overlay_sections() {
        use dataplane::overlay::{Encap, RouteTarget};
        use std::net::IpAddr;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c = VswitchConfig::parse(OVERLAY, 2).unwrap();
        let u = c.underlay.as_ref().unwrap();
        assert_eq!(u.uplink, "uplink");
        assert_eq!(u.local_vtep_ip, ip("192.0.2.1"));
        assert_eq!(u.local_mac.0, [2, 0, 0, 0, 0xff, 1]);
        assert_eq!(u.mtu, 1550);
        assert_eq!(u.on_link, "192.0.2.0/24".parse().unwrap());
        assert_eq!(u.gateway, Some(ip("192.0.2.254")));
        assert_eq!(c.networks.len(), 2);
        let blue = &c.networks[0];
        assert_eq!(
            (blue.name.as_str(), blue.vni, blue.encap),
            ("blue", 100, Encap::Vxlan)
        );
        assert_eq!(blue.tenant, "t1");
        assert_eq!(blue.subnets[1], "fd00:1::/64".parse().unwrap());
        assert_eq!(blue.gateway_ips, vec![ip("10.1.0.1"), ip("fd00:1::1")]);
        assert_eq!(blue.gateway_mac.0, [2, 0, 0, 0, 0xaa, 1]);
        assert!(!blue.flood_unknown);
        assert_eq!(blue.vteps, vec![ip("192.0.2.2")]);
        assert_eq!(c.networks[1].encap, Encap::Geneve);
        assert!(c.networks[1].flood_unknown);
        assert_eq!(c.endpoints[0].port, "pod1");
        assert_eq!(c.endpoints[0].ips, vec![ip("10.1.0.2"), ip("fd00:1::2")]);
        assert_eq!(c.remote_endpoints[1].vtep, ip("192.0.2.2"));
        assert_eq!(
            c.routes[0].target,
            RouteTarget::NextHop {
                network: "blue".into(),
                ip: ip("10.1.0.254")
            }
        );
        assert_eq!(c.routes[1].target, RouteTarget::Blackhole);
        assert_eq!(c.routes[1].prefix, "10.99.0.0/16".parse().unwrap());
        assert_eq!(
            c.overlay_ports().into_iter().collect::<Vec<_>>(),
            vec!["pod1", "pod2", "uplink"]
        );
    }

    #[test]
    fn overlay_defaults() {
        let c = VswitchConfig::parse(
            "[[network]]\nname = \"n\"\nvni = 1\ngateway_mac = \"02:00:00:00:00:01\"\n\
             [[route]]\nprefix = \"10.0.0.0/8\"\nblackhole = true\n",
            2,
        )
        .unwrap();
        let n = &c.networks[0];
        assert_eq!(n.encap, dataplane::overlay::Encap::Vxlan);
        assert_eq!(n.tenant, "default");
        assert!(n.subnets.is_empty() && n.gateway_ips.is_empty() && n.vteps.is_empty());
        assert!(!n.flood_unknown);
        assert_eq!(c.routes[0].tenant, "default");
        assert!(c.underlay.is_none() && c.overlay_ports().is_empty());
    }

    /// Each case edits the overlay example: `(replace this, with this, error contains
    /// each of these)`. An empty `from` appends `to` to the file.
    #[test]
    fn every_bad_overlay_input_names_its_item() {
        let cases: &[(&str, &str, &[&str])] = &[
            // Values refused while parsing.
            ("vni = 100", "vni = 16777216", &["network \"blue\": vni 16777216 is out of range (0-16777215)"]),
            ("vni = 100", "vni = -1", &["network \"blue\": vni -1 is out of range"]),
            ("encap = \"vxlan\"", "encap = \"gre\"", &["network \"blue\": encap \"gre\" is not one of"]),
            ("\"10.1.0.0/24\", \"fd00", "\"10.1.0.0/33\", \"fd00", &["network \"blue\": subnets: invalid prefix", "\"10.1.0.0/33\""]),
            ("gateway_ips = [\"10.1.0.1\"", "gateway_ips = [\"10.1.0.300\"", &["network \"blue\": gateway_ips: invalid IP address \"10.1.0.300\""]),
            ("gateway_mac = \"02:00:00:00:aa:01\"", "gateway_mac = \"02:00:00:aa:01\"", &["network \"blue\": gateway_mac: invalid MAC address"]),
            ("vteps = [\"192.0.2.2\"]", "vteps = [\"node2\"]", &["network \"blue\": vteps: invalid IP address \"node2\""]),
            ("flood_unknown = false", "flood_unkown = false", &["network \"blue\": unknown field `flood_unkown`"]),
            ("name = \"blue\"\nvni", "vni", &["network #0: missing field `name`"]),
            ("local_vtep_ip = \"192.0.2.1\"", "local_vtep_ip = \"192.0.2\"", &["underlay: local_vtep_ip: invalid IP address"]),
            ("on_link = \"192.0.2.0/24\"", "on_link = \"192.0.2.0\"", &["underlay: on_link: invalid prefix"]),
            ("mtu = 1550", "mtu = 70000", &["underlay: mtu: 70000 is out of range"]),
            ("local_mac = \"02:00:00:00:ff:01\"", "local_mac = \"02:00:00:00:ff:01\"\nvlan = 5", &["underlay: unknown field `vlan`"]),
            ("mac = \"02:00:00:00:01:02\"", "mac = \"02-00-00-00-01-02\"", &["endpoint #1 (network \"green\"): mac: invalid MAC address"]),
            ("ips = [\"10.2.0.2\"]", "ips = [\"10.2.0.2/24\"]", &["endpoint #1 (network \"green\"): ips: invalid IP address"]),
            ("vtep = \"192.0.2.2\"\n\n[[remote_endpoint]]", "vtep = \"192.0.2.x\"\n\n[[remote_endpoint]]", &["remote_endpoint #0 (network \"blue\"): vtep: invalid IP address"]),
            ("prefix = \"10.99.0.0/16\"", "prefix = \"10.99.0.0/99\"", &["route #1 (10.99.0.0/99): prefix: invalid prefix"]),
            ("blackhole = true", "blackhole = false", &["route #1 (10.99.0.0/16): give exactly one of"]),
            ("blackhole = true", "blackhole = true\nnext_hop = { network = \"blue\", ip = \"10.1.0.254\" }", &["route #1 (10.99.0.0/16): give exactly one of"]),
            ("ip = \"10.1.0.254\" }", "ip = \"10.1.0.254\", via = 1 }", &["route #0 (0.0.0.0/0): unknown field `via`"]),
            // Port references, checked by name.
            ("port = \"pod2\"", "port = \"pod9\"", &["endpoint #1 (network \"green\"): port \"pod9\" is not a [[port]]"]),
            ("uplink = \"uplink\"", "uplink = \"eth0\"", &["underlay: uplink \"eth0\" is not a [[port]]"]),
            ("port = \"pod2\"", "port = \"uplink\"", &["endpoint #1 (network \"green\"): port \"uplink\" is the underlay uplink"]),
            ("port = \"pod2\"", "port = \"pod1\"", &["endpoint #1 (network \"green\"): port \"pod1\" already carries endpoints of network \"blue\""]),
            ("", "[[patch]]\nfrom = \"plain\"\nto = \"pod1\"\n", &["patch.to: port \"pod1\" belongs to the overlay"]),
            ("", "[[l2]]\nmac = \"02:00:00:00:09:09\"\nport = \"uplink\"\n", &["l2[0].port: port \"uplink\" belongs to the overlay"]),
            // The dataplane builder's verdict on the whole overlay.
            ("vni = 200", "vni = 100", &["VNI 100", "network \"blue\"", "network \"green\""]),
            ("name = \"green\"", "name = \"blue\"", &["network name \"blue\" is used twice"]),
            ("gateway_ips = [\"10.2.0.1\"]", "gateway_ips = [\"10.3.0.1\"]", &["network \"green\": gateway 10.3.0.1 is not in any of its subnets"]),
            ("subnets = [\"10.2.0.0/24\"]", "subnets = [\"10.2.0.0/24\", \"10.1.0.128/25\"]", &["tenant \"t1\"", "network \"green\"", "overlaps", "network \"blue\""]),
            ("ips = [\"10.2.0.2\"]", "ips = [\"10.1.0.2\"]", &["endpoint 02:00:00:00:01:02 in network \"green\"", "10.1.0.2 is not in any of its subnets"]),
            ("mac = \"02:00:00:00:02:02\"", "mac = \"02:00:00:00:02:01\"", &["endpoint 02:00:00:00:02:01 in network \"blue\" is declared twice"]),
            ("ips = [\"10.1.0.3\"]", "ips = [\"10.1.0.2\"]", &["network \"blue\": 10.1.0.2 is claimed by endpoint"]),
            ("vtep = \"192.0.2.2\"\n\n[[remote_endpoint]]", "vtep = \"192.0.2.1\"\n\n[[remote_endpoint]]", &["remote endpoint 02:00:00:00:02:01 in network \"blue\"", "is the local VTEP"]),
            ("vteps = [\"198.51.100.7\"]", "vteps = [\"2001:db8::7\"]", &["network \"green\" flood list", "not of the family"]),
            ("mtu = 1550", "mtu = 1300", &["underlay MTU 1300 is too small"]),
            ("gateway = \"192.0.2.254\"", "gateway = \"198.51.100.1\"", &["underlay gateway 198.51.100.1 is outside the on-link prefix"]),
            ("network = \"blue\", ip = \"10.1.0.254\"", "network = \"blue\", ip = \"10.1.0.253\"", &["route 0.0.0.0/0 in tenant \"t1\": next hop 10.1.0.253 is not an endpoint of network \"blue\""]),
            ("tenant = \"t1\"\nprefix = \"10.99", "tenant = \"t9\"\nprefix = \"10.99", &["route 10.99.0.0/16 in tenant \"t9\": the tenant has no network"]),
            ("prefix = \"10.99.0.0/16\"", "prefix = \"10.2.0.0/24\"", &["route 10.2.0.0/24 in tenant \"t1\" is declared twice"]),
            ("network = \"green\"\nmac", "network = \"red\"\nmac", &["endpoint 02:00:00:00:01:02: network \"red\" does not exist"]),
        ];
        let mut checked = 0;
        for (from, to, wants) in cases {
            let text = if from.is_empty() {
                format!("{OVERLAY}\n{to}")
            } else {
                assert_eq!(
                    OVERLAY.matches(from).count(),
                    1,
                    "case {from:?} must match once"
                );
                OVERLAY.replacen(from, to, 1)
            };
            let got = match VswitchConfig::parse(&text, 2) {
                Ok(_) => panic!("{from:?} -> {to:?} was accepted"),
                Err(e) => e.to_string(),
            };
            for want in *wants {
                assert!(
                    got.contains(want),
                    "{from:?} -> {to:?}\n  got  {got:?}\n  want {want:?}"
                );
            }
            assert!(!got.contains('\n'), "error must be one line: {got:?}");
            checked += 1;
        }
        assert!(checked >= 15);
    }

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../deploy/vswitchd.toml");
        let c = VswitchConfig::parse(text, 2).unwrap();
        assert_eq!(c.networks.len(), 1);
        assert!(c.overlay_ports().contains("pod3"));
        let p = crate::compile::pipeline(&c, 1, &crate::compile::file_order(&c)).unwrap();
        assert_eq!(p.overlay.endpoint_count(), 3);
    }

    #[test]
    fn vhost_user_socket_access_resolves() {
        let text = "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n\
                    socket_owner = \"root\"\nsocket_group = 0\nsocket_mode = \"0660\"\n";
        let c = VswitchConfig::parse(text, 2).unwrap();
        let a = c.ports[0].profile.socket_access().unwrap();
        assert_eq!((a.uid, a.gid, a.mode), (Some(0), Some(0), Some(0o660)));
        // Without the keys the PMD's own owner and mode stay.
        let plain = "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n";
        let c = VswitchConfig::parse(plain, 2).unwrap();
        assert!(c.ports[0].profile.socket_access().unwrap().is_empty());
    }

    fn err(text: &str) -> String {
        VswitchConfig::parse(text, 2).unwrap_err().to_string()
    }

    #[test]
    fn a_kernel_port_names_its_interface() {
        let c = VswitchConfig::parse(
            "[[port]]\nname = \"pod1\"\nprofile = \"kernel\"\niface = \"vsw0123456789ab\"\nmtu = 1400\n",
            2,
        )
        .unwrap();
        assert_eq!(
            c.ports[0].profile,
            ProfileConfig::Kernel {
                iface: "vsw0123456789ab".into()
            }
        );
        assert_eq!(c.ports[0].mtu, Some(1400));
    }

    #[test]
    fn every_bad_input_has_its_own_message() {
        let cases: &[(&str, &str)] = &[
            ("[eal]\nmemroy_mb = 5\n", "unknown field `memroy_mb`"),
            ("[bogus]\n", "unknown field `bogus`"),
            ("[dataplane]\nworkers = [7]\n", "dataplane.workers: core 7 is out of range"),
            ("[dataplane]\nworkers = []\n", "at least one worker"),
            ("[dataplane]\nworkers = [1, 1]\n", "core 1 listed twice"),
            ("[eal]\nmain_core = 9\n", "eal.main_core: core 9 is out of range"),
            (
                "[[port]]\nname = \"a\"\nprofile = \"warp\"\n",
                "port \"a\": unknown variant `warp`",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"af_packet\"\nifac = \"x\"\n",
                "port \"a\": unknown field `ifac`",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"af_packet\"\n",
                "port \"a\": missing field `iface`",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"kernel\"\n",
                "port \"a\": missing field `iface`",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"kernel\"\niface = \"../eth0\"\n",
                "port \"a\": iface: \"../eth0\" is not a valid name: 1-15 characters",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"kernel\"\niface = \"vsw0123456789abc\"\n",
                "port \"a\": iface: \"vsw0123456789abc\" is not a valid name: 1-15 characters",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"kernel\"\niface = \"v1\"\n\
                 [[port]]\nname = \"b\"\nprofile = \"af_packet\"\niface = \"v1\"\n",
                "port \"b\": iface: interface \"v1\" is already port \"a\"'s",
            ),
            ("[[port]]\nprofile = \"null\"\n", "port #0: missing key `name`"),
            ("[[port]]\nname = \"a\"\n", "port \"a\": missing key `profile`"),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\n[[port]]\nname = \"a\"\nprofile = \"null\"\n",
                "duplicate port name",
            ),
            (
                "[[port]]\nname = \"a b\"\nprofile = \"null\"\n",
                "is not a valid name: 1-32 characters",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"af_packet\"\niface = \"v1\"\n\
                 [[port]]\nname = \"b\"\nprofile = \"tap\"\niface = \"v1\"\n",
                "port \"b\": iface: interface \"v1\" is already port \"a\"'s",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n\
                 [[port]]\nname = \"b\"\nprofile = \"virtio_user\"\npath = \"/run/x.sock\"\n",
                "port \"b\": path: socket \"/run/x.sock\" is already port \"a\"'s",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n\
                 socket_mode = \"0666\"\n",
                "port \"a\": socket_mode: \"0666\" lets every local user write",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n\
                 client = true\nsocket_group = \"root\"\n",
                "port \"a\": socket_group: in client mode the socket is the peer's",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n\
                 socket_owner = \"no-such-user-x\"\n",
                "port \"a\": socket_owner: no user \"no-such-user-x\" in /etc/passwd",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"vhost_user\"\npath = \"/run/x.sock\"\n\
                 socket_mode = true\n",
                "expected a name, an id or an octal mode, as a string",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\nworker = 3\n",
                "port \"a\": worker 3 does not exist",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"tap\"\niface = \"t\"\nmac = \"02:00\"\n",
                "port \"a\": mac: invalid MAC address \"02:00\"",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\n[[l2]]\nmac = \"zz:00:00:00:00:01\"\nport = \"a\"\n",
                "l2[0].mac: invalid MAC address",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\n[[l2]]\nmac = \"02:00:00:00:00:01\"\nport = \"b\"\n",
                "l2[0].port: no port named \"b\"",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\n[[l2]]\nmac = \"02:00:00:00:00:01\"\nport = \"a\"\n[[l2]]\nmac = \"02:00:00:00:00:01\"\nport = \"a\"\n",
                "MAC 02:00:00:00:00:01 listed twice",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\n[[patch]]\nfrom = \"a\"\nto = \"z\"\n",
                "patch.to: no port named \"z\"",
            ),
            (
                "[[port]]\nname = \"a\"\nprofile = \"null\"\n[[patch]]\nfrom = \"a\"\nto = \"a\"\n",
                "cannot be patched to itself",
            ),
            ("[dataplane]\nmbufs = 10\n", "dataplane.mbufs: at least 1024"),
            ("[dataplane]\nrx_desc = 5\n", "dataplane.rx_desc: between 64 and 4096"),
            (
                "[dataplane]\nflow_table_entries = 5000\n",
                "dataplane.flow_table_entries: 0 (no flow table) or a power of two",
            ),
            (
                "[dataplane]\nflow_table_entries = 512\n",
                "dataplane.flow_table_entries: 0 (no flow table) or a power of two",
            ),
            ("[eal]\nmemory_mb = 1\n", "eal.memory_mb: at least 64 MiB"),
            ("this is not toml", "expected"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(
                got.contains(want),
                "input {text:?}\n  got  {got:?}\n  want {want:?}"
            );
            assert!(!got.contains('\n'), "error must be one line: {got:?}");
        }
    }

    #[test]
    fn static_underlay_neighbours() {
        let base = r#"
[[port]]
name = "up"
profile = "null"
[underlay]
uplink = "up"
local_vtep_ip = "192.0.2.1"
local_mac = "02:00:00:00:ff:01"
on_link = "192.0.2.0/24"
"#;
        let good =
            format!("{base}neighbors = [{{ ip = \"192.0.2.9\", mac = \"02:00:00:00:ff:09\" }}]\n");
        let c = VswitchConfig::parse(&good, 2).unwrap();
        let u = c.underlay.unwrap();
        assert_eq!(
            u.neighbors,
            vec![(
                "192.0.2.9".parse().unwrap(),
                "02:00:00:00:ff:09".parse().unwrap()
            )]
        );
        let off_link = format!(
            "{base}neighbors = [{{ ip = \"198.51.100.9\", mac = \"02:00:00:00:ff:09\" }}]\n"
        );
        let e = VswitchConfig::parse(&off_link, 2).unwrap_err().to_string();
        assert!(
            e.contains("underlay: neighbors[0].ip: 198.51.100.9 is not in on_link"),
            "{e}"
        );
        let bad_mac = format!("{base}neighbors = [{{ ip = \"192.0.2.9\", mac = \"02:00\" }}]\n");
        let e = VswitchConfig::parse(&bad_mac, 2).unwrap_err().to_string();
        assert!(e.contains("underlay: neighbors[0].mac"), "{e}");
    }

    #[test]
    fn control_section() {
        let c = VswitchConfig::parse("[control]\nsocket = \"/tmp/x.sock\"\n", 2).unwrap();
        let c = c.control.unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.mode(), 0o660);
        assert_eq!(c.state_file, PathBuf::from("/var/lib/vswitch/state.json"));
        assert!(VswitchConfig::parse("", 2).unwrap().control.is_none());
        let e = VswitchConfig::parse("[control]\nlisten_tcp = \"0.0.0.0:9000\"\n", 2).unwrap_err();
        assert!(
            e.to_string()
                .contains("control.listen_tcp: plain TCP is refused"),
            "{e}"
        );
        let e = VswitchConfig::parse("[control]\nsocket_mode = \"0999\"\n", 2).unwrap_err();
        assert!(e.to_string().contains("control.socket_mode"), "{e}");
        for open in ["0666", "0604", "0661", "0777"] {
            let e = VswitchConfig::parse(&format!("[control]\nsocket_mode = \"{open}\"\n"), 2)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("control.socket_mode") && e.contains("gives other users access"),
                "{open}: {e}"
            );
        }
        for closed in ["0660", "0600", "0640", "0670"] {
            let c = VswitchConfig::parse(&format!("[control]\nsocket_mode = \"{closed}\"\n"), 2)
                .unwrap_or_else(|e| panic!("{closed}: {e}"));
            assert_eq!(c.control.unwrap().mode() & 0o007, 0);
        }
        let e = VswitchConfig::parse(
            &format!("[control]\nsocket_mode = \"{}\"\n", "7".repeat(5000)),
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.len() < 200,
            "the bad mode is quoted short: {} bytes",
            e.len()
        );
        let e = VswitchConfig::parse("[control]\nsockett = \"/x\"\n", 2).unwrap_err();
        assert!(e.to_string().contains("unknown field `sockett`"), "{e}");
    }

    #[test]
    fn liveness_timeout_default_covers_idle_sleeps_and_bad_values_are_refused() {
        let parse = |text: &str| VswitchConfig::parse(text, 2);
        let c = parse("[control]\n").unwrap();
        let t = c.control.as_ref().unwrap().liveness_timeout(&c.dataplane);
        assert_eq!(t, Duration::from_secs(1));
        // A long idle sleep raises the default, so sleeping is never "stuck".
        let c = parse("[dataplane]\nidle_sleep_max_us = 500000\n[control]\n").unwrap();
        let t = c.control.as_ref().unwrap().liveness_timeout(&c.dataplane);
        assert_eq!(t, Duration::from_secs(2));
        let c = parse("[control]\nliveness_timeout_ms = 300\n").unwrap();
        let t = c.control.as_ref().unwrap().liveness_timeout(&c.dataplane);
        assert_eq!(t, Duration::from_millis(300));
        for bad in [
            "[control]\nliveness_timeout_ms = 50\n",
            "[dataplane]\nidle_sleep_max_us = 100000\n[control]\nliveness_timeout_ms = 300\n",
            "[control]\nliveness_timeout_ms = 99999999\n",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("control.liveness_timeout_ms"), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
