//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::DEFAULT_SOCKET;

/// What `--help` ends with: the exit codes scripts branch on (see
/// [`crate::error`]).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done (also when the reader of the output goes away, as with `| head`)
  1  the switch refused the request; its reason is on stderr
  2  usage: bad flags or arguments, an unreadable or invalid file
  3  the daemon cannot be reached or does not answer within --timeout";

/// vswitchctl: configure and inspect a running vswitchd over its control socket.
#[derive(Debug, Parser)]
#[command(
    name = "vswitchctl",
    version,
    propagate_version = true,
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, env = "VSWITCH_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Seconds to wait for the connection and for each answer (0: forever); a
    /// daemon that does not answer in time is exit 3.
    #[arg(
        long,
        global = true,
        env = "VSWITCH_TIMEOUT",
        default_value_t = 30,
        value_name = "S"
    )]
    pub timeout: u64,
    /// Connect over TCP with mutual TLS (HOST:PORT) instead of the Unix socket;
    /// needs --cert, --key and --ca.
    #[arg(long, global = true, value_name = "HOST:PORT", requires_all = ["cert", "key", "ca"])]
    pub tcp: Option<String>,
    /// This client's certificate (PEM), for --tcp.
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM), for --tcp.
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The CA that signed the daemon's certificate (PEM), for --tcp.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The name the daemon's certificate must carry, for --tcp.
    #[arg(long, global = true, default_value = "localhost", value_name = "NAME")]
    pub tls_name: String,
    /// Make a write conditional: refused unless the state is still at this
    /// generation (0: any).
    #[arg(long, global = true, default_value_t = 0, value_name = "GEN")]
    pub expected_generation: u64,
    #[command(subcommand)]
    pub command: Command,
}

/// `--json` of every read.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generation, health, ports, networks and counts of the rest.
    Show(JsonFlag),
    /// Liveness: each worker's heartbeat and generation, and what grpc.health.v1
    /// reports; exits 1 when the daemon is not serving (a stuck worker).
    Health(JsonFlag),
    /// Ports: add, delete, list (as they run).
    #[command(subcommand)]
    Port(PortCmd),
    /// Virtual networks (VXLAN/Geneve).
    #[command(subcommand)]
    Net(NetCmd),
    /// Local endpoints: workloads behind a port of this switch.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Remote endpoints: workloads behind another node's VTEP.
    #[command(subcommand)]
    Remote(RemoteCmd),
    /// Static routes per tenant.
    #[command(subcommand)]
    Route(RouteCmd),
    /// The overlay's underlay (uplink, VTEP address, neighbours).
    #[command(subcommand)]
    Underlay(UnderlayCmd),
    /// Services: virtual IPs spread over backends by a Maglev table.
    #[command(subcommand)]
    Svc(SvcCmd),
    /// Network policy: NetworkPolicies, cluster policies (admin and
    /// baseline tiers) and the named ports of endpoints.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Counters per port and per worker, and drops by reason.
    Stats(StatsArgs),
    /// Replace the whole desired state with a document (YAML or JSON).
    ///
    /// Compare-and-set: refused while the switch is past the generation the
    /// document was exported at (`get` writes it), unless --force.
    Apply(ApplyArgs),
    /// Export the desired state as a document `apply` takes.
    Get(GetArgs),
    /// Run a packet through the switch's tables without sending it.
    Trace(TraceArgs),
    /// Copy a port's frames into a pcap file (tcpdump/tshark read it).
    Capture(CaptureArgs),
    /// Connection tracking: list or flush connections, per-worker counters.
    #[command(subcommand)]
    Ct(CtCmd),
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: ShellKind,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtCmd {
    /// The tracked connections (every worker's), by filter.
    List {
        #[command(flatten)]
        filter: CtFilterArgs,
        /// At most this many per worker (default 10000).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove the connections the filter takes (all without one).
    Flush {
        #[command(flatten)]
        filter: CtFilterArgs,
    },
    /// Per worker: connections held, created, expired, early drops, packets
    /// refused and handed off.
    Stats(JsonFlag),
}

/// Which connections: every option given must match.
#[derive(Debug, Clone, Default, Args)]
pub struct CtFilterArgs {
    /// A tracked network (its zone).
    #[arg(long, alias = "zone")]
    pub network: Option<String>,
    /// An address of either direction.
    #[arg(long)]
    pub address: Option<String>,
    /// A port of either direction.
    #[arg(long)]
    pub port: Option<u16>,
    /// A state: SYN_SENT, ESTABLISHED, TIME_WAIT, CLOSE, UDP_REPLIED, ...
    #[arg(long)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellKind {
    Bash,
    Zsh,
    Fish,
}

/// `k=v`, split at the first `=`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Add a port (hot-plugged by the daemon).
    Add {
        name: String,
        /// af_packet, kernel, tap, pcap, null, ring, vhost_user, virtio_user, mlx5.
        #[arg(long)]
        profile: String,
        /// A profile key (iface=vsw-pod1, rx_pcap=/tmp/x.pcap, ...); repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        params: Vec<(String, String)>,
        /// Flooding group ("default").
        #[arg(long)]
        group: Option<String>,
        /// MTU (the driver's when absent).
        #[arg(long)]
        mtu: Option<u32>,
    },
    /// Delete a port.
    Del { name: String },
    /// Ports as they run: driver, link, counters.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum NetCmd {
    /// Add a virtual network.
    Add {
        name: String,
        /// 24-bit VXLAN/Geneve network identifier.
        #[arg(long)]
        vni: u32,
        #[arg(long, value_enum)]
        encap: Option<Encap>,
        /// Tenant (VRF), "default" when absent.
        #[arg(long)]
        tenant: Option<String>,
        /// Connected prefix; repeatable.
        #[arg(long = "subnet", value_name = "CIDR")]
        subnets: Vec<String>,
        /// Distributed gateway address; repeatable.
        #[arg(long = "gateway-ip", value_name = "IP")]
        gateway_ips: Vec<String>,
        #[arg(long, value_name = "MAC")]
        gateway_mac: String,
        /// Flood unknown unicast to the VTEPs (dropped otherwise).
        #[arg(long)]
        flood_unknown: bool,
        /// Remote VTEP for broadcast/multicast; repeatable.
        #[arg(long = "vtep", value_name = "IP")]
        vteps: Vec<String>,
        /// Track the network's connections (TCP, UDP, ICMP).
        #[arg(long)]
        conntrack: bool,
        /// With --conntrack: follow TCP windows without dropping segments
        /// outside them.
        #[arg(long, requires = "conntrack")]
        no_window_tracking: bool,
        /// What a policy change does to open connections: `reevaluate`
        /// (default) or `keep` (the verdict a connection opened with).
        #[arg(long, value_name = "reevaluate|keep")]
        policy_on_change: Option<String>,
    },
    /// Delete a virtual network.
    Del { name: String },
    /// The virtual networks.
    List(JsonFlag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Encap {
    Vxlan,
    Geneve,
}

impl Encap {
    pub fn as_str(self) -> &'static str {
        match self {
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Add a workload behind a local port.
    Add {
        #[arg(long)]
        network: String,
        #[arg(long)]
        mac: String,
        /// Address; repeatable.
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<String>,
        #[arg(long)]
        port: String,
    },
    /// Delete a local endpoint.
    Del {
        #[arg(long)]
        network: String,
        #[arg(long)]
        mac: String,
    },
    /// The local endpoints.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add a workload behind a remote VTEP.
    Add {
        #[arg(long)]
        network: String,
        #[arg(long)]
        mac: String,
        /// Address; repeatable.
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<String>,
        #[arg(long, value_name = "IP")]
        vtep: String,
    },
    /// Delete a remote endpoint.
    Del {
        #[arg(long)]
        network: String,
        #[arg(long)]
        mac: String,
    },
    /// The remote endpoints.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum SvcCmd {
    /// Add a service.
    Add {
        name: String,
        /// The network (zone) of its virtual IP and backends.
        #[arg(long)]
        network: String,
        /// The virtual IP (IPv4 or IPv6).
        #[arg(long, value_name = "IP")]
        cluster_ip: String,
        /// A port: [NAME=]PORT[/TCP|UDP|SCTP][:TARGET_PORT][@NODE_PORT]; repeatable.
        #[arg(long = "port", value_name = "SPEC", required = true, value_parser = parse_service_port)]
        ports: Vec<ServicePortArg>,
        /// An external or load-balancer IP; repeatable.
        #[arg(long = "external-ip", value_name = "IP")]
        external_ips: Vec<String>,
        /// Keep a client on one backend (for --affinity-timeout seconds, 10800 by default).
        #[arg(long)]
        client_ip_affinity: bool,
        #[arg(long, value_name = "S", requires = "client_ip_affinity")]
        affinity_timeout: Option<u32>,
        /// The Maglev table size, a prime (65537 when absent).
        #[arg(long, value_name = "M")]
        table_size: Option<u32>,
        /// A backend: ADDRESS[=WEIGHT]; repeatable.
        #[arg(long = "backend", value_name = "ADDRESS[=WEIGHT]", required = true, value_parser = parse_backend)]
        backends: Vec<(String, Option<u32>)>,
    },
    /// Delete a service.
    Del { name: String },
    /// The services.
    List(JsonFlag),
    /// One service: its ports and backends, or with --table the Maglev table
    /// the dataplane holds (one backend per slot, and slots per backend).
    Show {
        name: String,
        /// The published table instead of the description.
        #[arg(long)]
        table: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// A service's backends: add, delete, change weight or state.
    #[command(subcommand)]
    Backend(SvcBackendCmd),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Every NetworkPolicy, cluster policy and policy endpoint.
    List(JsonFlag),
    /// One item by name (a NetworkPolicy unless --cluster or --endpoint),
    /// as a fragment `policy add` takes.
    Show {
        name: String,
        #[command(flatten)]
        kind: PolicyKindArgs,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Add the items of a fragment in one write: `[[policy]]`,
    /// `[[cluster_policy]]` and `[[policy_endpoint]]` tables with the
    /// configuration file's keys (TOML), or a JSON object of those lists.
    Add {
        /// The fragment; `-` reads standard input.
        file: String,
        /// Replace the items that exist (deleted and added in the same write).
        #[arg(long)]
        replace: bool,
    },
    /// Delete an item by name (a NetworkPolicy unless --cluster or --endpoint).
    Del {
        name: String,
        #[command(flatten)]
        kind: PolicyKindArgs,
    },
    /// The last denied connections (rate-limited per worker), oldest first;
    /// --json prints one JSON object per line.
    Log {
        /// Only the newest N.
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Which kind of policy item a name is.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct PolicyKindArgs {
    /// A cluster policy (admin or baseline tier).
    #[arg(long, conflicts_with = "endpoint")]
    pub cluster: bool,
    /// A policy endpoint (named ports).
    #[arg(long)]
    pub endpoint: bool,
}

#[derive(Debug, Subcommand)]
pub enum SvcBackendCmd {
    /// Add a backend to a service.
    Add {
        service: String,
        address: String,
        /// 0-65535 (1 when absent; 0 drains).
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long, value_enum)]
        state: Option<BackendStateArg>,
    },
    /// Delete a backend.
    Del { service: String, address: String },
    /// Change a backend's weight and/or state.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["weight", "state"]))]
    Set {
        service: String,
        address: String,
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long, value_enum)]
        state: Option<BackendStateArg>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendStateArg {
    Active,
    Draining,
    Down,
}

impl BackendStateArg {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendStateArg::Active => "active",
            BackendStateArg::Draining => "draining",
            BackendStateArg::Down => "down",
        }
    }
}

/// A `--port` of `svc add`, as the API's message (numbers unchecked: the
/// server checks them as it checks the file's).
pub type ServicePortArg = control::api::ServicePort;

/// `[NAME=]PORT[/PROTO][:TARGET_PORT][@NODE_PORT]`.
pub fn parse_service_port(s: &str) -> Result<ServicePortArg, String> {
    let usage = || format!("`{s}` is not [NAME=]PORT[/PROTO][:TARGET_PORT][@NODE_PORT]");
    let (name, rest) = match s.split_once('=') {
        Some((n, r)) => (n.to_string(), r),
        None => (String::new(), s),
    };
    let (rest, node_port) = match rest.split_once('@') {
        Some((r, n)) => (r, n.parse::<u32>().map_err(|_| usage())?),
        None => (rest, 0),
    };
    let (rest, target_port) = match rest.split_once(':') {
        Some((r, t)) => (r, t.parse::<u32>().map_err(|_| usage())?),
        None => (rest, 0),
    };
    let (port, protocol) = match rest.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_uppercase()),
        None => (rest, "TCP".to_string()),
    };
    Ok(ServicePortArg {
        name,
        protocol,
        port: port.parse().map_err(|_| usage())?,
        target_port,
        node_port,
    })
}

/// `ADDRESS[=WEIGHT]`.
pub fn parse_backend(s: &str) -> Result<(String, Option<u32>), String> {
    match s.split_once('=') {
        Some((a, w)) => Ok((
            a.to_string(),
            Some(w.parse().map_err(|_| format!("`{w}` is not a weight"))?),
        )),
        None => Ok((s.to_string(), None)),
    }
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Add a static route: through an endpoint of a network, or a blackhole.
    #[command(group = clap::ArgGroup::new("target").required(true).args(["via", "blackhole"]))]
    Add {
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Destination prefix (CIDR).
        prefix: String,
        /// The next hop's network.
        #[arg(long, value_name = "NETWORK", requires = "via")]
        via_network: Option<String>,
        /// The next hop (a known endpoint address of --via-network).
        #[arg(long, value_name = "IP", requires = "via_network")]
        via: Option<String>,
        /// Drop what matches.
        #[arg(long, conflicts_with_all = ["via", "via_network"])]
        blackhole: bool,
    },
    /// Delete a static route.
    Del {
        #[arg(long, default_value = "default")]
        tenant: String,
        prefix: String,
    },
    /// The static routes.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum UnderlayCmd {
    /// Set (replace) the underlay.
    Set {
        /// The port tunnels leave and arrive on.
        #[arg(long)]
        uplink: String,
        /// This switch's VTEP address.
        #[arg(long, value_name = "IP")]
        local_ip: String,
        /// The outer source MAC.
        #[arg(long, value_name = "MAC")]
        local_mac: String,
        /// VTEPs in this prefix are reached directly.
        #[arg(long, value_name = "CIDR")]
        on_link: String,
        /// The router for other VTEPs.
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// Underlay IP MTU (1500 when absent).
        #[arg(long)]
        mtu: Option<u32>,
        /// A static next hop; repeatable.
        #[arg(long = "neighbor", value_name = "IP=MAC", value_parser = parse_key_value)]
        neighbors: Vec<(String, String)>,
    },
    /// Remove the underlay (and with it the overlay's reach).
    Clear,
    /// The underlay.
    Show(JsonFlag),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub json: JsonFlag,
    /// Show drop reasons whose count is zero too.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The document: .json is JSON, anything else YAML; `-` reads YAML from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// Print the diff and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace the state whatever generation it is at. Without it the write is
    /// refused unless the switch is still at the document's generation (the
    /// `# … generation N` line or `generation` key that `get` writes), and a
    /// document without one is refused.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("frame").required(true).args(["hex", "packet"]))]
pub struct TraceArgs {
    /// The port the packet arrives on.
    #[arg(long, value_name = "PORT")]
    pub in_port: String,
    /// The frame in hex, from its Ethernet header.
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// A packet description, e.g.
    /// eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/ipv4(src=10.1.0.2,dst=10.1.0.3)/udp(sport=1000,dport=2000)
    #[arg(long, value_name = "SPEC")]
    pub packet: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The port.
    pub port: String,
    /// The pcap file to write.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// Stop after this many frames.
    #[arg(short = 'c', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    pub seconds: Option<u32>,
    /// Frames received, sent, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: CaptureDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptureDirection {
    Rx,
    Tx,
    Both,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn port_add_with_params() {
        let c = parse(&[
            "port",
            "add",
            "pod1",
            "--profile",
            "af_packet",
            "--param",
            "iface=vsw-pod1",
            "--param",
            "qpairs=a=b",
            "--mtu",
            "9000",
        ])
        .unwrap();
        let Command::Port(PortCmd::Add {
            name,
            profile,
            params,
            group,
            mtu,
        }) = c.command
        else {
            panic!("{c:?}")
        };
        assert_eq!((name.as_str(), profile.as_str()), ("pod1", "af_packet"));
        assert_eq!(
            params,
            [
                ("iface".into(), "vsw-pod1".into()),
                ("qpairs".into(), "a=b".into())
            ]
        );
        assert_eq!((group, mtu), (None, Some(9000)));
        assert!(parse(&["port", "add", "p", "--profile", "tap", "--param", "novalue"]).is_err());
        assert!(
            parse(&["port", "add", "p"]).is_err(),
            "--profile is required"
        );
    }

    #[test]
    fn socket_flag_and_default() {
        let c = parse(&["show"]).unwrap();
        if std::env::var_os("VSWITCH_SOCKET").is_none() {
            assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        }
        let c = parse(&["port", "list", "--json", "--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert!(matches!(
            c.command,
            Command::Port(PortCmd::List(JsonFlag { json: true }))
        ));
    }

    #[test]
    fn net_add() {
        let c = parse(&[
            "net",
            "add",
            "blue",
            "--vni",
            "100",
            "--encap",
            "geneve",
            "--tenant",
            "t1",
            "--subnet",
            "10.1.0.0/24",
            "--subnet",
            "fd00:1::/64",
            "--gateway-ip",
            "10.1.0.1",
            "--gateway-mac",
            "02:00:00:00:aa:01",
            "--flood-unknown",
            "--vtep",
            "192.0.2.2",
        ])
        .unwrap();
        let Command::Net(NetCmd::Add {
            vni,
            encap,
            subnets,
            flood_unknown,
            vteps,
            ..
        }) = c.command
        else {
            panic!()
        };
        assert_eq!(
            (vni, encap, flood_unknown),
            (100, Some(Encap::Geneve), true)
        );
        assert_eq!(subnets.len(), 2);
        assert_eq!(vteps, ["192.0.2.2"]);
        assert!(
            parse(&["net", "add", "x", "--vni", "1"]).is_err(),
            "--gateway-mac is required"
        );
        assert!(parse(&[
            "net",
            "add",
            "x",
            "--vni",
            "1",
            "--gateway-mac",
            "m",
            "--encap",
            "gre"
        ])
        .is_err());
    }

    #[test]
    fn service_ports_and_backends() {
        let p = parse_service_port("http=80/udp:8080@30080").unwrap();
        assert_eq!(
            (
                p.name.as_str(),
                p.protocol.as_str(),
                p.port,
                p.target_port,
                p.node_port
            ),
            ("http", "UDP", 80, 8080, 30080)
        );
        let p = parse_service_port("443").unwrap();
        assert_eq!(
            (p.protocol.as_str(), p.port, p.target_port, p.node_port),
            ("TCP", 443, 0, 0)
        );
        assert!(parse_service_port("http=").is_err());
        assert!(parse_service_port("80:x").is_err());
        assert_eq!(
            parse_backend("fd00::5=3").unwrap(),
            ("fd00::5".into(), Some(3))
        );
        assert_eq!(
            parse_backend("10.1.0.5").unwrap(),
            ("10.1.0.5".into(), None)
        );
        assert!(parse_backend("10.1.0.5=heavy").is_err());
        let c = parse(&[
            "svc",
            "add",
            "web",
            "--network",
            "blue",
            "--cluster-ip",
            "10.96.0.10",
            "--port",
            "80:8080",
            "--backend",
            "10.1.0.5=2",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Svc(SvcCmd::Add { .. })));
        // A service needs a port and a backend; a set needs something to set.
        assert!(parse(&[
            "svc",
            "add",
            "web",
            "--network",
            "b",
            "--cluster-ip",
            "1.2.3.4",
            "--backend",
            "1.1.1.1"
        ])
        .is_err());
        assert!(parse(&["svc", "backend", "set", "web", "10.1.0.5"]).is_err());
        assert!(
            parse(&["svc", "backend", "set", "web", "10.1.0.5", "--state", "draining"]).is_ok()
        );
        assert!(parse(&["svc", "show", "web", "--table", "--json"]).is_ok());
    }

    #[test]
    fn route_targets() {
        assert!(parse(&[
            "route",
            "add",
            "--tenant",
            "t1",
            "0.0.0.0/0",
            "--via-network",
            "blue",
            "--via",
            "10.1.0.254"
        ])
        .is_ok());
        assert!(parse(&["route", "add", "10.99.0.0/16", "--blackhole"]).is_ok());
        assert!(
            parse(&["route", "add", "10.0.0.0/8"]).is_err(),
            "a target is required"
        );
        assert!(
            parse(&["route", "add", "10.0.0.0/8", "--via", "1.2.3.4"]).is_err(),
            "--via needs --via-network"
        );
        assert!(parse(&["route", "add", "10.0.0.0/8", "--via-network", "b"]).is_err());
        assert!(parse(&[
            "route",
            "add",
            "10.0.0.0/8",
            "--blackhole",
            "--via-network",
            "b",
            "--via",
            "1.1.1.1"
        ])
        .is_err());
        let c = parse(&["route", "del", "10.0.0.0/8"]).unwrap();
        assert!(
            matches!(c.command, Command::Route(RouteCmd::Del { tenant, .. }) if tenant == "default")
        );
    }

    #[test]
    fn underlay_endpoint_remote() {
        let c = parse(&[
            "underlay",
            "set",
            "--uplink",
            "uplink",
            "--local-ip",
            "192.0.2.1",
            "--local-mac",
            "02:00:00:00:ff:01",
            "--on-link",
            "192.0.2.0/24",
            "--neighbor",
            "192.0.2.2=02:00:00:00:ff:02",
            "--neighbor",
            "fd00::2=02:00:00:00:ff:03",
        ])
        .unwrap();
        let Command::Underlay(UnderlayCmd::Set {
            neighbors, gateway, ..
        }) = c.command
        else {
            panic!()
        };
        assert_eq!(neighbors[1], ("fd00::2".into(), "02:00:00:00:ff:03".into()));
        assert_eq!(gateway, None);
        assert!(parse(&["underlay", "clear"]).is_ok());
        assert!(parse(&["underlay", "show", "--json"]).is_ok());
        assert!(parse(&[
            "endpoint",
            "add",
            "--network",
            "b",
            "--mac",
            "m",
            "--ip",
            "1.1.1.1",
            "--ip",
            "::1",
            "--port",
            "p"
        ])
        .is_ok());
        assert!(
            parse(&["endpoint", "add", "--network", "b", "--mac", "m"]).is_err(),
            "--port is required"
        );
        assert!(parse(&["endpoint", "del", "--network", "b", "--mac", "m"]).is_ok());
        assert!(parse(&[
            "remote",
            "add",
            "--network",
            "b",
            "--mac",
            "m",
            "--vtep",
            "192.0.2.2"
        ])
        .is_ok());
        assert!(parse(&["remote", "del", "--network", "b", "--mac", "m"]).is_ok());
        assert!(parse(&["remote", "list", "--json"]).is_ok());
    }

    #[test]
    fn apply_get_trace_stats_completion() {
        let c = parse(&["apply", "-f", "-", "--dry-run"]).unwrap();
        assert!(
            matches!(c.command, Command::Apply(ApplyArgs { ref file, dry_run: true, force: false }) if file == "-")
        );
        assert!(parse(&["apply"]).is_err());
        let c = parse(&["get"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Get(GetArgs {
                output: OutputFormat::Yaml
            })
        ));
        assert!(parse(&["get", "-o", "json"]).is_ok());
        assert!(parse(&["get", "-o", "xml"]).is_err());
        assert!(parse(&["trace", "--in-port", "pod1", "--hex", "00"]).is_ok());
        assert!(
            parse(&["trace", "--in-port", "pod1"]).is_err(),
            "a frame is required"
        );
        assert!(parse(&["trace", "--in-port", "p", "--hex", "00", "--packet", "eth"]).is_err());
        assert!(parse(&["stats", "--all", "--json"]).is_ok());
        assert!(parse(&["completion", "zsh"]).is_ok());
        assert!(parse(&["completion", "tcsh"]).is_err());
        let c = parse(&["--expected-generation", "7", "port", "del", "p"]).unwrap();
        assert_eq!(c.expected_generation, 7);
    }
}
