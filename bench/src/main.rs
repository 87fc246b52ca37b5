//! `vswitch-bench`: command-line front end of the benchmark harness.
//!
//! Subcommands map one-to-one onto library calls so that the runner and the
//! OVS comparison can call the library directly; new commands (`run`,
//! `ovs-rules`, ...) slot in as further [`Command`] variants and new
//! scenarios as further [`GenScenario`] variants.
//!
//! Every error is reported as a single line on stderr: exit status 2 for a
//! bad command line, 1 for a failure while running.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bench::scenario::{write_pcap, FrameSize, L2Scenario, Scenario};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};

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
    /// Generate a scenario's traffic as a pcap file.
    Gen {
        #[command(subcommand)]
        scenario: GenScenario,
    },
}

#[derive(Debug, Subcommand)]
enum GenScenario {
    /// L2 forwarding: Ethernet/IPv4/UDP, one destination MAC 02:00:00:xx:xx:xx per flow.
    L2(L2GenArgs),
}

#[derive(Debug, Args)]
struct L2GenArgs {
    /// Number of flows; accepts k/m suffixes (1, 1k, 100k).
    #[arg(long, value_name = "N", value_parser = parse_flows)]
    flows: u32,
    /// Nominal frame size including the 4-byte FCS (64..=1518; the pcap holds
    /// size-4 bytes), or imix for 7:4:1 of 64/576/1518.
    #[arg(long, value_name = "BYTES|imix")]
    size: FrameSize,
    /// Number of frames to write; accepts k/m suffixes.
    #[arg(long, value_name = "K", value_parser = parse_packets)]
    packets: u64,
    /// Output pcap file, or - for stdout.
    #[arg(short = 'o', long = "output", value_name = "PCAP")]
    output: PathBuf,
    /// Also write the destination MACs (the static L2 table), one per line.
    #[arg(long, value_name = "FILE")]
    macs_out: Option<PathBuf>,
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
        Command::Gen {
            scenario: GenScenario::L2(args),
        } => gen_l2(&args),
    }
}

fn gen_l2(args: &L2GenArgs) -> anyhow::Result<()> {
    let scenario = L2Scenario::new(args.flows, args.size)?;
    if args.packets < u64::from(args.flows) {
        eprintln!(
            "warning: {} packets cover only the first {} of {} flows",
            args.packets, args.packets, args.flows
        );
    }
    write_output(&args.output, |out| {
        write_pcap(&scenario, args.packets, out)?;
        Ok(())
    })?;
    if let Some(path) = &args.macs_out {
        write_output(path, |out| Ok(scenario.write_destination_macs(out)?))?;
    }
    if args.output != Path::new("-") {
        println!(
            "wrote {} frames of scenario {} ({} flows, size {}) to {}",
            args.packets,
            scenario.name(),
            scenario.flow_count(),
            scenario.size(),
            args.output.display()
        );
    }
    Ok(())
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

    #[test]
    fn flows_and_packets_are_range_checked() {
        assert_eq!(parse_flows("100k"), Ok(100_000));
        assert!(parse_flows("0").is_err());
        assert!(parse_flows("17m").is_err());
        assert!(parse_packets("0").is_err());
    }

    #[test]
    fn clap_errors_become_one_line() {
        let err = Cli::try_parse_from(["vswitch-bench", "gen", "l2", "--size", "64"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(!line.contains('\n'));
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains("--flows"), "{line}");

        let err = Cli::try_parse_from(["vswitch-bench", "gen", "l2", "--flow", "1"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(
            line.starts_with("error: unexpected argument '--flow' found; tip: "),
            "{line}"
        );
        assert!(!line.contains("--help"), "{line}");
    }
}
