//! `vswitch-bench`: command-line front end of the benchmark harness.
//!
//! - `gen <scenario> ... -o PCAP`: the traffic only (as before).
//! - `gen <scenario> ... --out-dir DIR`: traffic, vswitchd config, OVS rules
//!   and descriptor ([`bench::bundle`]).
//! - `run <scenario> ...`: vswitchd measured on the scenario
//!   ([`bench::runner::run_vswitchd`]).
//! - `testpmd <scenario> ...`: `dpdk-testpmd` io forwarding on the same
//!   traffic ([`bench::runner::run_testpmd`]).
//! - `compare <scenario>...|all ...`: vswitchd, testpmd io and OVS-DPDK on the
//!   same traffic and core, side by side ([`bench::compare`]).
//! - `ab <scenario> --baseline A --candidate B ...`: two vswitchd builds
//!   alternated round by round, with a sign-test verdict ([`bench::ab`]).
//! - `instructions <scenario> ...`: instructions per packet of vswitchd, testpmd
//!   io and OVS-DPDK under valgrind's callgrind ([`bench::callgrind`]).
//! - `vhost ...`: two vhost-user pods' stream through vswitchd, OVS-DPDK and
//!   testpmd io in paired rounds, and restart resumption ([`bench::vhost`]).
//!
//! New scenarios slot in as further [`ScenarioName`] variants.
//!
//! Every error is reported as a single line on stderr: exit status 2 for a
//! bad command line, 1 for a failure while running.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use bench::ab::{baseline_first, AbReport, AbRounds};
use bench::bundle::{default_packets, mbufs_for, memory_mb_for, write_bundle, Bundle, RunSettings};
use bench::callgrind::{self, Callgrind};
use bench::catalog;
use bench::compare::{combine, ovs_result, run_ovs, table, Comparison, Outcome, Rounds};
use bench::memory::{Memory, MemoryChoice};
use bench::runner::{run_testpmd, run_vswitchd, tsc_hz, Measurement, RunOptions, WorkDir};
use bench::scenario::{
    write_pcap, FrameSize, L2Scenario, L3Scenario, Scenario, TunnelDirection, TunnelKind,
    TunnelScenario,
};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vswitch-bench",
    version,
    about = "Benchmark harness for the vswitch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a scenario: its traffic as a pcap file (-o), or the traffic,
    /// a complete vswitchd config, the OVS rules and a descriptor (--out-dir).
    Gen(GenArgs),
    /// Measure vswitchd on a scenario: pcap replay -> null sink, one
    /// busy-polling worker on one pinned core.
    Run(RunArgs),
    /// Measure dpdk-testpmd (io forwarding: the I/O floor) on the same traffic.
    Testpmd(TestpmdArgs),
    /// Side by side: vswitchd, dpdk-testpmd io (the floor) and OVS-DPDK on the
    /// same traffic and core, one after the other; one table, or with --json
    /// one JSON object per scenario and line.
    Compare(CompareArgs),
    /// A/B of two vswitchd builds on one scenario: alternated round by round
    /// (the order flips every round), each round's rates paired, and a sign
    /// test's verdict: faster, slower or no clear change.
    Ab(AbArgs),
    /// Instructions per packet of vswitchd, testpmd io (the floor) and OVS-DPDK
    /// (when installed) on a scenario, counted by valgrind's callgrind: figures
    /// that do not move with the machine's noise, and where they go, function by
    /// function.
    Instructions(InstructionsArgs),
    /// The scenario catalogue as Markdown: for every scenario its traffic, the
    /// vswitchd configuration and the OVS-DPDK rules and bridge setup that do its
    /// job (what bench/SCENARIOS.md holds; `make bench-docs` rewrites it).
    Scenarios(CatalogArgs),
    /// Control-plane writes at scale against a forwarding vswitchd: one-endpoint
    /// and one-route writes to published, a CNI pod write (port + endpoint),
    /// network adds, a bulk write, the refusal of an invalid 200-op write, and
    /// sustained writes beside a forwarding stream.
    Writes(WritesArgs),
    /// A pod's wait with the CNI plugin: ADD to first packet through the switch
    /// for kernel pods, ADD to socket ready for vhost-user pods (median, p99),
    /// beside pods already attached.
    Cni(CniArgs),
    /// Two vhost-user pods (one dpdk-testpmd, two virtio_user ports, frames
    /// bouncing between them) through vswitchd with one worker, OVS-DPDK's
    /// dpdkvhostuserclient ports on one PMD, and testpmd io (the floor), in
    /// paired rounds with a sign test; with --restarts, how long client-mode
    /// ports take to pass traffic again after vswitchd restarts.
    Vhost(VhostArgs),
}

#[derive(Debug, Args)]
struct VhostArgs {
    /// Paired rounds (the order of vswitchd and OVS flips every round).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Measured one-second samples per forwarder and round.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,
    /// Seconds of stream before sampling.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// The switch's forwarding core (vswitchd's worker, OVS's PMD, the
    /// floor's forwarding lcore).
    #[arg(long, default_value_t = 1)]
    switch_cpu: usize,
    /// The pods' CPU, also the switch's control threads'.
    #[arg(long, default_value_t = 0)]
    pod_cpu: usize,
    /// Bursts of 32 frames each pod port puts in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=64))]
    bursts: u32,
    /// Descriptors per virtqueue of the pods' ports.
    #[arg(long, default_value_t = 1024)]
    queue_size: u16,
    /// Niceness of the pods and the switch under test (all forwarders alike);
    /// below 0 they take their CPUs back from other work on a shared machine.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    nice: i32,
    /// vswitchd restarts to time after the rounds (0: none).
    #[arg(long, default_value_t = 0)]
    restarts: u32,
    /// Then vswitchd and OVS-DPDK each this many seconds under valgrind's
    /// callgrind: instructions per packet of the switch's forwarding thread
    /// (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    instructions: u32,
    /// Leave OVS-DPDK out.
    #[arg(long)]
    no_ovs: bool,
    /// Leave testpmd io (the floor) out.
    #[arg(long)]
    no_floor: bool,
    /// Keep the work directory (configurations, logs) here.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    #[command(flatten)]
    binaries: Binaries,
}

#[derive(Debug, Args)]
struct CniArgs {
    /// Pods to time, per mode.
    #[arg(long, default_value_t = 100)]
    pods: u32,
    /// vhost-user pods attached before (Debian's DPDK allows 32 ethdevs in all).
    #[arg(long, default_value_t = 24)]
    attached: u32,
    /// Kernel pods attached before, each in a namespace of its own with its
    /// interface up (packet-socket ports: no ethdev each).
    #[arg(long, default_value_t = 0)]
    attached_kernel: u32,
    /// The worker's core.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// Where the IPAM plugin (host-local) is.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_path: PathBuf,
    /// The network configuration's cniVersion (Debian's host-local stops at
    /// 1.0.0: at 1.1.0 the plugin runs it again at 1.0.0 after its refusal).
    #[arg(long, default_value = "1.1.0")]
    cni_version: String,
    /// The vswitchd binary; default: `vswitchd` next to this program.
    #[arg(long, value_name = "PATH")]
    vswitchd: Option<PathBuf>,
    /// The vswitch-cni binary; default: `vswitch-cni` next to this program.
    #[arg(long, value_name = "PATH")]
    plugin: Option<PathBuf>,
    /// vhost-user pods also timed from ADD to their first packet (a
    /// dpdk-testpmd icmpecho pod started when the ADD returns, pinged by the
    /// peer); 0: none.
    #[arg(long, default_value_t = 0)]
    vhost_first_packet: u32,
    /// The testpmd binary (the DPDK pods of --vhost-first-packet).
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
}

#[derive(Debug, Args)]
struct WritesArgs {
    /// Remote endpoints in the state.
    #[arg(long, default_value_t = 10_000)]
    endpoints: u32,
    /// Static routes in the state.
    #[arg(long, default_value_t = 100_000)]
    routes: u32,
    /// One-endpoint writes to time, and as many one-route writes (a quarter
    /// as many pod writes, an eighth as many network adds).
    #[arg(long, default_value_t = 400)]
    rounds: u32,
    /// Endpoint adds in the bulk write.
    #[arg(long, default_value_t = 10_000)]
    bulk: u32,
    /// Seconds of back-to-back writes beside the forwarding stream.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Services in the state for the second backend-weight figure.
    #[arg(long, default_value_t = 1000)]
    services: u32,
    /// NetworkPolicies in the state for the policy-update figure (#26).
    #[arg(long, default_value_t = 3000)]
    policies: u32,
    /// Pods (policy endpoints with a named port) for it.
    #[arg(long, default_value_t = 3000)]
    policy_pods: u32,
    /// Policy updates (one policy replaced) to time.
    #[arg(long, default_value_t = 200)]
    policy_updates: u32,
    /// The worker's core.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
    /// The vswitchd binary; default: `vswitchd` next to this program.
    #[arg(long, value_name = "PATH")]
    vswitchd: Option<PathBuf>,
}

/// The catalogue's flows and frame size.
#[derive(Debug, Args)]
struct CatalogArgs {
    /// Flows per scenario: two show the per-flow pattern.
    #[arg(long, value_name = "N", default_value = "2", value_parser = parse_flows)]
    flows: u32,
    /// Nominal frame size (FCS included), or imix.
    #[arg(long, value_name = "BYTES|imix", default_value = "64")]
    size: FrameSize,
}

/// The forwarders a side by side runs.
#[derive(Debug, Args)]
struct Binaries {
    /// The vswitchd binary; default: `vswitchd` next to this program.
    #[arg(long, value_name = "PATH")]
    vswitchd: Option<PathBuf>,
    /// The testpmd binary.
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// The OVS-DPDK runner; default: bench/scripts/ovs_dpdk.py of the source
    /// tree this program was built from.
    #[arg(long, value_name = "PATH")]
    ovs_script: Option<PathBuf>,
}

impl Binaries {
    /// The vswitchd to run: `--vswitchd`, or the one next to this program.
    fn vswitchd(&self) -> anyhow::Result<PathBuf> {
        vswitchd_or_sibling(self.vswitchd.as_ref())
    }

    /// The OVS-DPDK runner: `--ovs-script`, or the source tree's.
    fn ovs_script(&self) -> PathBuf {
        self.ovs_script
            .clone()
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ovs_dpdk.py"))
    }
}

#[derive(Debug, Args)]
struct InstructionsArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Seconds each forwarder runs under callgrind (where it forwards one to a
    /// few Mpps); its whole run is counted.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,
    /// Also simulate the caches (L1, and the L2 as the last level) and branch
    /// prediction: misses per packet, about twice as slow.
    #[arg(long)]
    cache_sim: bool,
    /// vswitchd's hash tables laid out from this seed (`VSWITCH_HASH_SEED`), the
    /// same in every run and build, so that two builds' counts compare to the
    /// instruction.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        conflicts_with = "random_hash"
    )]
    hash_seed: u64,
    /// Let vswitchd draw its hash multipliers at random, as in production (a
    /// MAC lookup then costs a few instructions more or less from run to run).
    #[arg(long)]
    random_hash: bool,
    /// Functions listed per forwarder.
    #[arg(long, value_name = "N", default_value_t = 8)]
    top: usize,
    /// Leave testpmd io out.
    #[arg(long)]
    no_testpmd: bool,
    /// Leave OVS-DPDK out (otherwise counted when installed: `make bench-deps`;
    /// it runs twice under callgrind, for `--seconds` and four times as long).
    #[arg(long)]
    no_ovs: bool,
    /// One JSON object.
    #[arg(long)]
    json: bool,
    /// CPU of the forwarding worker (valgrind runs one thread at a time anyway).
    #[arg(long, value_name = "C", default_value_t = 1)]
    core: usize,
    #[command(flatten)]
    binaries: Binaries,
    /// Generate into (and keep) this directory: the callgrind files too, for
    /// callgrind_annotate or kcachegrind.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct AbArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    measure: MeasureArgs,
    /// The vswitchd build to compare against.
    #[arg(long, value_name = "PATH", value_parser = parse_binary)]
    baseline: PathBuf,
    /// The vswitchd build under test.
    #[arg(long, value_name = "PATH", value_parser = parse_binary)]
    candidate: PathBuf,
    /// Rounds; each runs both builds once. Six is the fewest in which a sign
    /// test can call a result at 5%.
    #[arg(long, value_name = "R", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
}

/// A `compare` argument: one scenario or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareTarget {
    One(ScenarioName),
    All,
}

fn parse_compare_target(s: &str) -> Result<CompareTarget, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(CompareTarget::All);
    }
    ScenarioName::from_str(s, true)
        .map(CompareTarget::One)
        .map_err(|_| {
            let names: Vec<String> = ScenarioName::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
                .collect();
            format!(
                "unknown scenario {s:?} (expected all, {})",
                names.join(", ")
            )
        })
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Scenarios (l2, vxlan-decap, vxlan-encap, geneve-decap, geneve-encap,
    /// l3), or all.
    #[arg(value_name = "SCENARIO|all", required = true, num_args = 1.., value_parser = parse_compare_target)]
    scenarios: Vec<CompareTarget>,
    /// Number of flows; accepts k/m suffixes (1, 1k, 100k).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_flows)]
    flows: u32,
    /// Nominal frame size including the FCS (64..=1518), or imix. Tunnel
    /// scenarios: the inner frame's size.
    #[arg(long, value_name = "BYTES|imix", default_value = "64")]
    size: FrameSize,
    /// l3 only (ignored by the other scenarios): number of static routes;
    /// default: the flow count.
    #[arg(long, value_name = "N", value_parser = parse_prefixes)]
    prefixes: Option<u32>,
    /// Number of frames in the pcap; default max(flows, 4096) rounded up to 12.
    #[arg(long, value_name = "K", value_parser = parse_packets)]
    packets: Option<u64>,
    /// Measured window of each forwarder: one-second samples.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,
    /// Seconds each forwarder runs before its window.
    #[arg(long, value_name = "S", default_value_t = 2)]
    warmup: u32,
    /// Run the three forwarders in turn R times (vswitchd, testpmd, OVS,
    /// vswitchd, ...) and report each one's median over the rounds: on a noisy
    /// machine the ratios then compare runs made minutes, not seconds, apart
    /// less often.
    #[arg(long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// CPU of the forwarding worker / PMD of all three (their main thread
    /// goes to CPU 0, or 1 if C is 0).
    #[arg(long, value_name = "C", default_value_t = 1)]
    core: usize,
    /// One JSON object per scenario, one per line.
    #[arg(long)]
    json: bool,
    /// Leave OVS-DPDK out (its figures are null, "ovs_skipped": "--no-ovs").
    #[arg(long)]
    no_ovs: bool,
    /// EAL memory of all three: hugepages, no-huge (4 KiB pages), or auto
    /// (hugepages when enough are free and mounted: `make bench-hugepages`).
    #[arg(long, value_name = "KIND", default_value = "auto")]
    memory: MemoryChoice,
    #[command(flatten)]
    binaries: Binaries,
    /// Generate each scenario into (and keep) DIR/<scenario> instead of a
    /// temporary directory (logs of vswitchd and testpmd included).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioName {
    /// L2 forwarding by a static MAC table, one destination MAC per flow.
    L2,
    /// VXLAN decapsulation to local pods (replay is the uplink).
    VxlanDecap,
    /// VXLAN encapsulation to remote pods (sink is the uplink).
    VxlanEncap,
    /// Geneve decapsulation to local pods (replay is the uplink).
    GeneveDecap,
    /// Geneve encapsulation to remote pods (sink is the uplink).
    GeneveEncap,
    /// Routing between two networks of a tenant over N static routes.
    L3,
}

#[derive(Debug, Args)]
struct ScenarioArgs {
    /// The scenario.
    #[arg(value_enum)]
    scenario: ScenarioName,
    /// Number of flows; accepts k/m suffixes (1, 1k, 100k).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_flows)]
    flows: u32,
    /// Nominal frame size including the 4-byte FCS (64..=1518; the pcap holds
    /// size-4 bytes), or imix for 7:4:1 of 64/576/1518. Tunnel scenarios: the
    /// inner frame's size (the tunnelled frame is 50 bytes longer).
    #[arg(long, value_name = "BYTES|imix", default_value = "64")]
    size: FrameSize,
    /// l3 only: number of static routes (/24s); default: the flow count.
    #[arg(long, value_name = "N", value_parser = parse_prefixes)]
    prefixes: Option<u32>,
    /// Number of frames to write; accepts k/m suffixes. Required with -o;
    /// default with --out-dir: max(flows, 4096) rounded up to 12.
    #[arg(long, value_name = "K", value_parser = parse_packets)]
    packets: Option<u64>,
    /// vxlan-encap/geneve-encap: leave out the static underlay neighbour (to see
    /// the switch wait for ARP: every packet is dropped as neighbor_unresolved).
    #[arg(long)]
    no_static_neighbor: bool,
    /// vswitchd's `[dataplane] flow_table_entries` (a power of two from 1024
    /// to 2^24, or 0 for none); default: vswitchd's own. Above the flow count
    /// every replayed frame is a hit once warm; far below it, nearly every
    /// frame is a miss (the replay cycles through the flows).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    flow_table_entries: Option<u64>,
    /// Track the connections of the scenario's networks (`conntrack = true`;
    /// l3 and the tunnel scenarios: every packet then updates its connection).
    #[arg(long)]
    conntrack: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["output", "out_dir"])))]
struct GenArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Output pcap file, or - for stdout (the traffic only).
    #[arg(short = 'o', long = "output", value_name = "PCAP")]
    output: Option<PathBuf>,
    /// Write DIR/traffic.pcap, DIR/vswitchd.toml, DIR/ovs-flows.txt and
    /// DIR/scenario.json.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// l2 only: also write the destination MACs (the static L2 table), one per line.
    #[arg(long, value_name = "FILE")]
    macs_out: Option<PathBuf>,
    /// CPU of the worker in the generated vswitchd.toml.
    #[arg(long, value_name = "C", default_value_t = 1)]
    core: usize,
}

#[derive(Debug, Args)]
struct MeasureArgs {
    /// Measured window: one-second samples.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,
    /// Seconds discarded after start-up.
    #[arg(long, value_name = "S", default_value_t = 2)]
    warmup: u32,
    /// CPU of the forwarding worker (the main thread goes to CPU 0, or 1 if C is 0).
    #[arg(long, value_name = "C", default_value_t = 1)]
    core: usize,
    /// Print the result as one JSON document.
    #[arg(long)]
    json: bool,
    /// EAL memory: hugepages, no-huge (4 KiB pages), or auto (hugepages when
    /// enough are free and mounted: `make bench-hugepages`).
    #[arg(long, value_name = "KIND", default_value = "auto")]
    memory: MemoryChoice,
    /// Generate into (and keep) this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    measure: MeasureArgs,
    /// The vswitchd binary; default: `vswitchd` next to this program.
    #[arg(long, value_name = "PATH")]
    vswitchd: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TestpmdArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    measure: MeasureArgs,
    /// The testpmd binary.
    #[arg(long, value_name = "PATH", default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// testpmd forwarding mode (io: the I/O floor; mac also rewrites MACs).
    #[arg(long, value_name = "MODE", default_value = "io")]
    forward_mode: String,
}

/// Hugepage memory (MiB) the largest of one comparison's runs needs: vswitchd's and
/// testpmd's EAL memory for a pool holding `packets` replayed frames, and with
/// `ovs` OVS-DPDK's (it sizes its own pool, 262144 mbufs, about 1 GiB).
fn memory_needed_mb(packets: u64, ovs: bool) -> u64 {
    let ours = memory_mb_for(mbufs_for(packets));
    if ovs {
        ours.max(1280)
    } else {
        ours
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version: clap's normal output.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `vswitch-bench gen`: the help is the useful answer.
            let _ = err.print();
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("{}", one_line(&err.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(args) => gen(&args),
        Command::Run(args) => {
            let vswitchd = vswitchd_or_sibling(args.vswitchd.as_ref())?;
            measure(&args.scenario, &args.measure, |bundle, scenario, opts| {
                run_vswitchd(&vswitchd, bundle, scenario, opts)
            })
        }
        Command::Testpmd(args) => {
            measure(&args.scenario, &args.measure, |bundle, scenario, opts| {
                run_testpmd(&args.testpmd, &args.forward_mode, bundle, scenario, opts)
            })
        }
        Command::Compare(args) => compare(&args),
        Command::Ab(args) => ab(&args),
        Command::Instructions(args) => instructions(&args),
        Command::Scenarios(args) => scenarios(&args),
        Command::Writes(args) => writes(&args),
        Command::Cni(args) => cni(&args),
        Command::Vhost(args) => vhost(&args),
    }
}

/// `writes`: control-plane writes at scale (see [`bench::writes`]).
fn writes(args: &WritesArgs) -> anyhow::Result<()> {
    let report = bench::writes::run(&bench::writes::WritesOptions {
        vswitchd: vswitchd_or_sibling(args.vswitchd.as_ref())?,
        endpoints: args.endpoints,
        routes: args.routes,
        rounds: args.rounds,
        bulk: args.bulk,
        seconds: args.seconds,
        core: args.core,
        services: args.services,
        policies: args.policies,
        policy_pods: args.policy_pods,
        policy_updates: args.policy_updates,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::writes::to_text(&report));
    }
    Ok(())
}

/// `scenarios`: the catalogue of every scenario on stdout.
fn scenarios(args: &CatalogArgs) -> anyhow::Result<()> {
    let all = ScenarioName::value_variants()
        .iter()
        .map(|&scenario| {
            build_scenario(&ScenarioArgs {
                scenario,
                flows: args.flows,
                size: args.size,
                prefixes: None,
                packets: None,
                no_static_neighbor: false,
                flow_table_entries: None,
                conntrack: false,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut command = String::from("vswitch-bench scenarios");
    if args.flows != 2 {
        command += &format!(" --flows {}", args.flows);
    }
    if args.size != FrameSize::Fixed(64) {
        command += &format!(" --size {}", args.size);
    }
    let mut out = std::io::stdout().lock();
    catalog::write_catalog(&all, &command, &mut out)?;
    out.flush()?;
    Ok(())
}

/// `instructions`: the scenario generated once, then vswitchd and testpmd io each
/// run under callgrind for the same time; their forwarding threads' counts over
/// the packets each sent.
fn instructions(args: &InstructionsArgs) -> anyhow::Result<()> {
    let vswitchd = args.binaries.vswitchd()?;
    let callgrind = Callgrind::new(
        args.cache_sim,
        (!args.random_hash).then_some(args.hash_seed),
    )?;
    // 4 KiB pages: instructions do not depend on the page size, and no hugepages
    // need reserving for a count.
    let p = prepare_with(
        &args.scenario,
        &MeasureArgs {
            seconds: args.seconds,
            warmup: 0,
            core: args.core,
            json: args.json,
            memory: MemoryChoice::NoHuge,
            keep: args.keep.clone(),
        },
        // The worker sleeps (up to 1 ms) in the rounds before its ports arrive,
        // which would otherwise spin into the count (about 1% of a 15-second run,
        // varying); once forwarding it is never idle.
        1000,
    )?;
    let scenario = p.scenario.as_ref();
    let vswitch = count_instructions("vswitchd", &p, &callgrind, |opts| {
        run_vswitchd(&vswitchd, &p.bundle, scenario, opts)
    })?;
    let testpmd = if args.no_testpmd {
        None
    } else {
        Some(count_instructions("testpmd-io", &p, &callgrind, |opts| {
            run_testpmd(&args.binaries.testpmd, "io", &p.bundle, scenario, opts)
        })?)
    };
    let ovs = if args.no_ovs {
        Err("--no-ovs".to_owned())
    } else {
        count_ovs_instructions(&args.binaries.ovs_script(), &p, &callgrind)
    };
    let report = callgrind::Report {
        scenario: scenario.name().to_owned(),
        frame_size: scenario.size().to_string(),
        flows: scenario.flow_count(),
        valgrind: callgrind.version.clone(),
        hash_seed: callgrind.hash_seed,
        vswitch,
        testpmd,
        ovs,
        top: args.top,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Runs forwarder `name` (by `run`) under callgrind on the prepared scenario and
/// counts its forwarding thread over the packets it sent on `sink`.
fn count_instructions(
    name: &str,
    p: &Prepared,
    callgrind: &Callgrind,
    run: impl FnOnce(&RunOptions) -> anyhow::Result<Measurement>,
) -> anyhow::Result<callgrind::Count> {
    let out = p.bundle.dir.join(format!("{name}.callgrind"));
    let opts = RunOptions {
        wrapper: callgrind.wrapper(&out),
        ..p.opts.clone()
    };
    eprintln!(
        "instructions: {name} under callgrind for {} s",
        opts.seconds
    );
    let m = run(&opts).with_context(|| format!("{name} under callgrind"))?;
    let packets = m.ports.get("sink").map_or(0, |c| c.tx_packets);
    if packets == 0 {
        bail!("{name} sent no packet under callgrind");
    }
    forwarding_count(name, &out, packets)
}

/// Forwarder `name`'s count: its forwarding thread among callgrind's files
/// `<out>-NN`, and that thread's functions, over `packets`.
fn forwarding_count(name: &str, out: &Path, packets: u64) -> anyhow::Result<callgrind::Count> {
    let thread = callgrind::busiest_thread(out)?;
    let functions = callgrind::functions(&thread.file)?;
    Ok(callgrind::Count {
        forwarder: name.to_owned(),
        packets,
        thread,
        functions,
    })
}

/// OVS-DPDK (`ovs_dpdk.py`, ovs-vswitchd under callgrind) on the prepared
/// scenario, twice: for `--seconds` and for [`OVS_LONG_RUN`] times as long. Its
/// PMD thread's fixed costs (start-up, the upcalls that install the datapath's
/// flows, the reconfiguration when the run ends: about 200 M instructions at 1k
/// flows, a tenth of a 10-second run's count) are in both runs, so the
/// difference of the two counts over the difference of their packets is its
/// cost per packet forwarded. `Err` says why there is none: not installed (a
/// skip), or a run failed (an error for the report, not for the whole command:
/// vswitchd's count stands).
fn count_ovs_instructions(
    script: &Path,
    p: &Prepared,
    callgrind: &Callgrind,
) -> Result<callgrind::Count, String> {
    let short = ovs_run_count(script, p, callgrind, "short", p.opts.seconds)?;
    let long = ovs_run_count(script, p, callgrind, "long", p.opts.seconds * OVS_LONG_RUN)?;
    long.minus(&short).ok_or_else(|| {
        let why = format!(
            "its long run forwarded no more packets than its short one ({} and {})",
            long.packets, short.packets
        );
        eprintln!("instructions: ovs-dpdk n/a: {why}");
        format!("failed: {why}")
    })
}

/// How many times longer than `--seconds` OVS-DPDK's second run is.
const OVS_LONG_RUN: u32 = 4;

/// One OVS-DPDK run under callgrind for `seconds` (its whole run counted, its
/// files `ovs-dpdk-<label>.callgrind-NN`): its PMD thread over every packet it
/// forwarded.
fn ovs_run_count(
    script: &Path,
    p: &Prepared,
    callgrind: &Callgrind,
    label: &str,
    seconds: u32,
) -> Result<callgrind::Count, String> {
    let name = "ovs-dpdk";
    let out = p.bundle.dir.join(format!("{name}-{label}.callgrind"));
    let opts = RunOptions {
        wrapper: callgrind.wrapper(&out),
        seconds,
        // Its datapath learns its flows through upcalls first.
        warmup: 2,
        ..p.opts.clone()
    };
    eprintln!("instructions: {name} under callgrind for {seconds} s ({label} run)");
    let doc = match ovs_result(script, &p.bundle, &opts) {
        Ok(doc) => doc,
        Err(Outcome::Skipped(why)) => {
            eprintln!("instructions: {name} skipped: {why}");
            return Err(format!("skipped: {why}"));
        }
        Err(outcome) => {
            let why = match outcome {
                Outcome::Failed(why) | Outcome::Skipped(why) => why,
                Outcome::Mpps(_) => String::new(),
            };
            eprintln!("instructions: {name} n/a: {why}");
            return Err(format!("failed: {why}"));
        }
    };
    let count = || -> anyhow::Result<callgrind::Count> {
        let packets = doc["tx_packets_total"]
            .as_u64()
            .filter(|&n| n > 0)
            .context("ovs_dpdk.py reported no packet forwarded (tx_packets_total)")?;
        forwarding_count(name, &out, packets)
    };
    count().map_err(|err| {
        eprintln!("instructions: {name} n/a: {err:#}");
        format!("failed: {err:#}")
    })
}

/// `ab`: the scenario generated once, then both builds measured in every round,
/// the order flipping each round; any failed run ends it with an error naming
/// the build and the round (a verdict over fewer pairs would be a different
/// test from the one asked for).
fn ab(args: &AbArgs) -> anyhow::Result<()> {
    let p = prepare(&args.scenario, &args.measure)?;
    let mut rounds = AbRounds::default();
    for round in 1..=args.rounds {
        let first = baseline_first(round);
        for baseline in [first, !first] {
            let (who, binary, rates) = if baseline {
                ("baseline", &args.baseline, &mut rounds.baseline)
            } else {
                ("candidate", &args.candidate, &mut rounds.candidate)
            };
            let m = run_vswitchd(binary, &p.bundle, p.scenario.as_ref(), &p.opts)
                .with_context(|| format!("{who} {} in round {round}", binary.display()))?;
            eprintln!(
                "ab: round {round}/{}: {who} {:.3} Mpps",
                args.rounds,
                m.mpps()
            );
            rates.push(m.mpps());
        }
    }
    let report = AbReport {
        scenario: p.scenario.name().to_owned(),
        frame_size: p.scenario.size().to_string(),
        flows: p.scenario.flow_count(),
        baseline: args.baseline.display().to_string(),
        candidate: args.candidate.display().to_string(),
        tsc_hz: tsc_hz(),
        memory: p.opts.memory,
        rounds,
    };
    if args.measure.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// `compare`: every scenario generated once, then measured by vswitchd,
/// testpmd io and OVS-DPDK in turn; a failure of one forwarder is reported
/// in its column and the rest still run; the exit status is 1 if vswitchd or
/// testpmd failed anywhere (an OVS failure shows as n/a and its reason).
fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let vswitchd = args.binaries.vswitchd()?;
    let ovs_script = args.binaries.ovs_script();
    let mut names: Vec<ScenarioName> = Vec::new();
    for target in &args.scenarios {
        let add: Vec<ScenarioName> = match target {
            CompareTarget::All => ScenarioName::value_variants().to_vec(),
            CompareTarget::One(name) => vec![*name],
        };
        for name in add {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let opts = RunOptions {
        seconds: args.seconds,
        warmup: args.warmup,
        core: args.core,
        memory: Memory::resolve(
            args.memory,
            memory_needed_mb(
                args.packets.unwrap_or_else(|| default_packets(args.flows)),
                !args.no_ovs,
            ),
        )?,
        wrapper: Vec::new(),
    };
    let tsc = tsc_hz();
    let mut rows = Vec::new();
    let mut failed = false;
    for name in names {
        let scenario_args = ScenarioArgs {
            scenario: name,
            flows: args.flows,
            size: args.size,
            prefixes: args.prefixes.filter(|_| name == ScenarioName::L3),
            packets: args.packets,
            no_static_neighbor: false,
            flow_table_entries: None,
            conntrack: false,
        };
        let scenario = build_scenario(&scenario_args)?;
        let packets = args
            .packets
            .unwrap_or_else(|| default_packets(scenario.flow_count()));
        let work = match &args.keep {
            Some(dir) => WorkDir::kept(&dir.join(scenario.name()))?,
            None => WorkDir::temp()?,
        };
        let bundle = write_bundle(
            scenario.as_ref(),
            packets,
            work.path(),
            &RunSettings {
                hugepages: opts.memory.is_huge(),
                ..RunSettings::on_core(args.core)
            },
            serde_json::Value::Null,
        )?;
        let label = format!(
            "{} size {} {} flow(s)",
            scenario.name(),
            scenario.size(),
            scenario.flow_count()
        );
        let mut rounds = Rounds::default();
        for round in 1..=args.rounds {
            let label = if args.rounds > 1 {
                format!("{label} (round {round}/{})", args.rounds)
            } else {
                label.clone()
            };
            let outcome = |who: &str, result: anyhow::Result<Measurement>| match result {
                Ok(m) => {
                    eprintln!("compare: {label}: {who} {:.3} Mpps", m.mpps());
                    Outcome::Mpps(m.mpps())
                }
                Err(err) => {
                    eprintln!("compare: {label}: {who} failed: {err:#}");
                    Outcome::Failed(format!("{err:#}"))
                }
            };
            rounds.vswitch.push(outcome(
                "vswitchd",
                run_vswitchd(&vswitchd, &bundle, scenario.as_ref(), &opts),
            ));
            rounds.testpmd.push(outcome(
                "testpmd io",
                run_testpmd(
                    &args.binaries.testpmd,
                    "io",
                    &bundle,
                    scenario.as_ref(),
                    &opts,
                ),
            ));
            rounds.ovs.push(if args.no_ovs {
                Outcome::Skipped("--no-ovs".to_owned())
            } else {
                let ovs = run_ovs(&ovs_script, &bundle, &opts);
                match &ovs {
                    Outcome::Mpps(m) => eprintln!("compare: {label}: ovs-dpdk {m:.3} Mpps"),
                    Outcome::Skipped(r) => eprintln!("compare: {label}: ovs-dpdk skipped: {r}"),
                    Outcome::Failed(r) => eprintln!("compare: {label}: ovs-dpdk n/a: {r}"),
                }
                ovs
            });
        }
        let (vswitch, testpmd, ovs) = (
            combine(&rounds.vswitch),
            combine(&rounds.testpmd),
            combine(&rounds.ovs),
        );
        // OVS is the baseline: its failure is reported in its column only.
        failed |= [&vswitch, &testpmd]
            .iter()
            .any(|o| matches!(o, Outcome::Failed(_)));
        let row = Comparison {
            scenario: scenario.name().to_owned(),
            frame_size: scenario.size().to_string(),
            flows: scenario.flow_count(),
            tsc_hz: tsc,
            memory: opts.memory,
            vswitch,
            ovs,
            testpmd,
            rounds,
        };
        if args.json {
            let mut out = io::stdout().lock();
            writeln!(out, "{}", row.to_json_line())?;
            out.flush()?;
        }
        rows.push(row);
    }
    if !args.json {
        print!("{}", table(&rows));
    }
    if failed {
        bail!("some measurements failed (see above)");
    }
    Ok(())
}

fn build_scenario(args: &ScenarioArgs) -> anyhow::Result<Box<dyn Scenario>> {
    if args.prefixes.is_some() && args.scenario != ScenarioName::L3 {
        bail!("--prefixes applies to the l3 scenario only");
    }
    let tunnel = |kind, direction| -> anyhow::Result<Box<dyn Scenario>> {
        Ok(Box::new(
            TunnelScenario::new(kind, direction, args.flows, args.size)?
                .with_static_neighbor(!args.no_static_neighbor),
        ))
    };
    Ok(match args.scenario {
        ScenarioName::L2 => Box::new(L2Scenario::new(args.flows, args.size)?),
        ScenarioName::VxlanDecap => tunnel(TunnelKind::Vxlan, TunnelDirection::Decap)?,
        ScenarioName::VxlanEncap => tunnel(TunnelKind::Vxlan, TunnelDirection::Encap)?,
        ScenarioName::GeneveDecap => tunnel(TunnelKind::Geneve, TunnelDirection::Decap)?,
        ScenarioName::GeneveEncap => tunnel(TunnelKind::Geneve, TunnelDirection::Encap)?,
        ScenarioName::L3 => Box::new(L3Scenario::new(
            args.flows,
            args.prefixes
                .unwrap_or(args.flows.min(L3Scenario::MAX_PREFIXES)),
            args.size,
        )?),
    })
}

fn gen(args: &GenArgs) -> anyhow::Result<()> {
    let scenario = build_scenario(&args.scenario)?;
    if args.macs_out.is_some() && args.scenario.scenario != ScenarioName::L2 {
        bail!("--macs-out applies to the l2 scenario only");
    }
    let packets = match (args.scenario.packets, &args.output) {
        (Some(n), _) => n,
        (None, Some(_)) => bail!("--packets is required with -o"),
        (None, None) => default_packets(scenario.flow_count()),
    };
    if packets < u64::from(scenario.flow_count()) {
        eprintln!(
            "warning: {} packets cover only the first {} of {} flows",
            packets,
            packets,
            scenario.flow_count()
        );
    }
    if let Some(output) = &args.output {
        write_output(output, |out| {
            write_pcap(scenario.as_ref(), packets, out)?;
            Ok(())
        })?;
        if output != Path::new("-") {
            println!(
                "wrote {} frames of scenario {} ({} flows, size {}) to {}",
                packets,
                scenario.name(),
                scenario.flow_count(),
                scenario.size(),
                output.display()
            );
        }
    }
    if let Some(path) = &args.macs_out {
        let l2 = L2Scenario::new(args.scenario.flows, args.scenario.size)?;
        write_output(path, |out| Ok(l2.write_destination_macs(out)?))?;
    }
    if let Some(dir) = &args.out_dir {
        let bundle = write_bundle(
            scenario.as_ref(),
            packets,
            dir,
            &RunSettings {
                flow_table_entries: args.scenario.flow_table_entries,
                conntrack: args.scenario.conntrack,
                ..RunSettings::on_core(args.core)
            },
            serde_json::Value::Null,
        )?;
        println!(
            "wrote scenario {} ({} flows, size {}, {} frames) to {}",
            scenario.name(),
            scenario.flow_count(),
            scenario.size(),
            packets,
            bundle.dir.display()
        );
    }
    Ok(())
}

/// A scenario generated into its work directory, ready to be measured by one
/// or more forwarders; the directory goes with it unless --keep.
struct Prepared {
    scenario: Box<dyn Scenario>,
    bundle: Bundle,
    opts: RunOptions,
    _work: WorkDir,
}

/// Generates the scenario of `args` with `measure`'s core, memory and windows.
fn prepare(args: &ScenarioArgs, measure: &MeasureArgs) -> anyhow::Result<Prepared> {
    prepare_with(args, measure, 0)
}

/// [`prepare`] with the worker's `idle_sleep_max_us` (0: busy-poll).
fn prepare_with(
    args: &ScenarioArgs,
    measure: &MeasureArgs,
    idle_sleep_max_us: u64,
) -> anyhow::Result<Prepared> {
    let scenario = build_scenario(args)?;
    let packets = args
        .packets
        .unwrap_or_else(|| default_packets(scenario.flow_count()));
    let work = match &measure.keep {
        Some(dir) => WorkDir::kept(dir)?,
        None => WorkDir::temp()?,
    };
    let memory = Memory::resolve(measure.memory, memory_needed_mb(packets, false))?;
    let bundle = write_bundle(
        scenario.as_ref(),
        packets,
        work.path(),
        &RunSettings {
            hugepages: memory.is_huge(),
            idle_sleep_max_us,
            flow_table_entries: args.flow_table_entries,
            conntrack: args.conntrack,
            ..RunSettings::on_core(measure.core)
        },
        serde_json::Value::Null,
    )?;
    let opts = RunOptions {
        seconds: measure.seconds,
        warmup: measure.warmup,
        core: measure.core,
        memory,
        wrapper: Vec::new(),
    };
    Ok(Prepared {
        scenario,
        bundle,
        opts,
        _work: work,
    })
}

/// Generates the scenario into a work directory, measures it with `switch`,
/// prints the result; the directory is removed afterwards unless --keep.
fn measure(
    args: &ScenarioArgs,
    measure: &MeasureArgs,
    switch: impl FnOnce(&Bundle, &dyn Scenario, &RunOptions) -> anyhow::Result<Measurement>,
) -> anyhow::Result<()> {
    let p = prepare(args, measure)?;
    let result = switch(&p.bundle, p.scenario.as_ref(), &p.opts)?;
    if measure.json {
        println!("{}", result.to_json());
    } else {
        print!("{}", result.to_text());
    }
    Ok(())
}

/// `given`, or `vswitchd` in the directory of this executable.
fn cni(args: &CniArgs) -> anyhow::Result<()> {
    let report = bench::cni::run(&bench::cni::CniOptions {
        vswitchd: vswitchd_or_sibling(args.vswitchd.as_ref())?,
        plugin: match &args.plugin {
            Some(p) => p.clone(),
            None => sibling_binary("vswitch-cni")?,
        },
        cni_path: args.cni_path.clone(),
        pods: args.pods,
        attached: args.attached,
        attached_kernel: args.attached_kernel,
        core: args.core,
        cni_version: args.cni_version.clone(),
        vhost_first_packet: args.vhost_first_packet,
        testpmd: args.testpmd.clone(),
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `vhost`: the pods' stream through three forwarders (see [`bench::vhost`]).
fn vhost(args: &VhostArgs) -> anyhow::Result<()> {
    use bench::vhost::{Layout, Pinning, Programs, VhostOptions};
    let pinning = Pinning::new(args.switch_cpu, args.pod_cpu)?;
    let work = match &args.keep {
        Some(dir) => WorkDir::kept(dir)?,
        None => WorkDir::temp()?,
    };
    let report = bench::vhost::run(&VhostOptions {
        programs: Programs {
            vswitchd: args.binaries.vswitchd()?,
            testpmd: args.binaries.testpmd.clone(),
            ovs_script: args.binaries.ovs_script(),
        },
        layout: Layout {
            dir: work.path().to_owned(),
            pinning,
            queue_size: args.queue_size,
            bursts: args.bursts,
            nice: args.nice,
        },
        rounds: args.rounds,
        seconds: args.seconds,
        warmup: args.warmup,
        no_ovs: args.no_ovs,
        no_floor: args.no_floor,
        restarts: args.restarts,
        instructions: args.instructions,
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn vswitchd_or_sibling(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path.clone()),
        None => sibling_binary("vswitchd"),
    }
}

/// `name` in the directory of this executable.
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate vswitch-bench itself")?;
    let path = exe
        .parent()
        .map(|dir| dir.join(name))
        .context("vswitch-bench has no parent directory")?;
    if !path.exists() {
        bail!(
            "{} not found (build it, or pass --vswitchd PATH)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `write` against a buffered `path`, or stdout for `-`, naming the
/// path in any error.
fn write_output(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let result = if path == Path::new("-") {
        write(&mut BufWriter::new(io::stdout().lock()))
    } else {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        write(&mut BufWriter::new(file))
    };
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Parses a count with an optional decimal `k` (10^3) or `m` (10^6) suffix.
fn parse_count(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, multiplier) = match lower.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => (lower.as_str(), 1),
        },
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{s:?} is not a count (expected e.g. 1, 1000, 1k, 100k, 1m)"))
}

fn parse_flows(s: &str) -> Result<u32, String> {
    let max = L2Scenario::MAX_FLOWS;
    match parse_count(s)? {
        n @ 1.. if n <= u64::from(max) => Ok(n as u32),
        n => Err(format!("flow count {n} is out of range 1..={max}")),
    }
}

fn parse_prefixes(s: &str) -> Result<u32, String> {
    let max = L3Scenario::MAX_PREFIXES;
    match parse_count(s)? {
        n @ 1.. if n <= u64::from(max) => Ok(n as u32),
        n => Err(format!("prefix count {n} is out of range 1..={max}")),
    }
}

/// A path to an existing regular file (a vswitchd build), checked before any
/// scenario is generated or run.
fn parse_binary(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("{s} is not a file")),
        Err(e) => Err(format!("cannot use {s}: {e}")),
    }
}

fn parse_packets(s: &str) -> Result<u64, String> {
    match parse_count(s)? {
        0 => Err("packet count must be at least 1".to_owned()),
        n => Ok(n),
    }
}

/// Squeezes a rendered clap error onto one line: the message and any tip,
/// without the usage block and the "try --help" trailer, whitespace runs
/// collapsed and paragraphs separated by "; ".
fn one_line(rendered: &str) -> String {
    rendered
        .split("\n\n")
        .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|paragraph| !paragraph.is_empty())
        .take_while(|paragraph| {
            !paragraph.starts_with("Usage:") && !paragraph.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_accept_suffixes() {
        assert_eq!(parse_count("1"), Ok(1));
        assert_eq!(parse_count("1k"), Ok(1_000));
        assert_eq!(parse_count("100K"), Ok(100_000));
        assert_eq!(parse_count("2m"), Ok(2_000_000));
        assert!(parse_count("k").is_err());
        assert!(parse_count("1.5k").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("99999999999999999999m").is_err());
    }

    /// Every command that takes a scenario defaults to one flow of 64-byte frames,
    /// as `compare` does.
    #[test]
    fn scenario_commands_default_to_one_flow_of_64_bytes() {
        let ab = ["--baseline", "/bin/true", "--candidate", "/bin/true"];
        for (cmd, more) in [
            ("gen", &["-o", "x.pcap"][..]),
            ("run", &[]),
            ("testpmd", &[]),
            ("ab", &ab),
        ] {
            let argv: Vec<&str> = ["vswitch-bench", cmd, "l2"]
                .into_iter()
                .chain(more.iter().copied())
                .collect();
            let cli = Cli::try_parse_from(argv).unwrap();
            let args = match cli.command {
                Command::Gen(a) => a.scenario,
                Command::Run(a) => a.scenario,
                Command::Testpmd(a) => a.scenario,
                Command::Ab(a) => a.scenario,
                other => panic!("{cmd}: {other:?}"),
            };
            assert_eq!((args.flows, args.size), (1, FrameSize::Fixed(64)), "{cmd}");
        }
    }

    #[test]
    fn flows_and_packets_are_range_checked() {
        assert_eq!(parse_flows("100k"), Ok(100_000));
        assert!(parse_flows("0").is_err());
        assert!(parse_flows("17m").is_err());
        assert!(parse_packets("0").is_err());
    }

    #[test]
    fn clap_errors_become_one_line() {
        let err = Cli::try_parse_from(["vswitch-bench", "gen", "l2", "--size", "65k"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(!line.contains('\n'));
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains("--size"), "{line}");

        let err = Cli::try_parse_from(["vswitch-bench", "gen", "l2", "--flow", "1"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(
            line.starts_with("error: unexpected argument '--flow' found; tip: "),
            "{line}"
        );
        assert!(!line.contains("--help"), "{line}");
    }
}
