//! `vswitchd`: the vswitch daemon.
//!
//! Start-up is ordered so that every configuration mistake is found before anything
//! changes on the machine: parse and validate the file, check every port's
//! prerequisites (interface present, PMD installed, files readable) and what the
//! API needs (socket group, TLS files, directories, state file), compile the first
//! pipeline snapshot — and only then initialise DPDK, create ports and start
//! the pinned workers. Shutdown (SIGINT/SIGTERM) runs the other way round: workers
//! stop and drop their queues, then ports stop and close.
#![forbid(unsafe_code)]

mod api;
mod conntrack;
mod device;
mod eal_args;
mod logging;
mod metrics;
mod policy;
mod ports;
mod profiles;
mod socket_reserve;
mod stats_file;
mod switch;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use control::config::LogFormat;

/// Where the packaged daemon and its unit find the configuration.
const DEFAULT_CONFIG: &str = "/etc/vswitch/vswitchd.toml";

/// The vswitch daemon: DPDK ports and pinned poll-mode workers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); see deploy/vswitchd.toml.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Log lines as `plain` text or `json` objects; overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Validate the configuration, the ports' prerequisites and what `[control]`
    /// needs (group, TLS files, directories, state file), then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match switch::prepare(&cli.config) {
        Err(e) => {
            // One line, no log decoration: this is what an operator sees first.
            // Asked for JSON on the command line, it is a JSON line (the file's
            // `[log]` may be what failed, so only the flag counts here).
            match cli.log_format {
                Some(LogFormat::Json) => eprintln!("{}", logging::error_line(&format!("{e:#}"))),
                _ => eprintln!("vswitchd: {e:#}"),
            }
            ExitCode::from(2)
        }
        Ok(_) if cli.check => {
            println!("vswitchd: {} is valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Ok(prepared) => {
            let format = cli.log_format.unwrap_or(prepared.log_format());
            logging::init(format);
            match switch::run(prepared) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    // The plain log line has decorations; the operator's line
                    // does not. JSON readers have the event.
                    if format == LogFormat::Plain {
                        eprintln!("vswitchd: {e:#}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}
