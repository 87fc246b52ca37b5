//! vswitchctl: the operators' command line of vswitchd.
//!
//! The binary parses [`cli::Cli`], connects with [`client::connect`] and runs
//! [`commands::execute`]; each command is also a plain function of a
//! [`client::Client`] (e.g. [`commands::apply`], [`commands::trace`]) for tests.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod commands;
mod ct;
pub mod doc;
pub mod error;
pub mod packet;
pub mod policy;
pub mod svc;
pub mod table;

use std::io::Write;
use std::time::Duration;

/// An empty health request (the cheapest call, to test a session).
pub(crate) fn api_health_request() -> control::api::HealthRequest {
    control::api::HealthRequest {}
}

/// Runs a parsed command line to completion, printing to `out`.
pub async fn run(cli: &cli::Cli, out: &mut dyn Write) -> error::Result<()> {
    if let cli::Command::Completion { shell } = &cli.command {
        return commands::completion(*shell, out);
    }
    let prepared = commands::prepare(cli)?;
    let timeout = (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout));
    // What error messages call the daemon: the address actually dialled.
    let daemon = match &cli.tcp {
        Some(addr) => addr.clone(),
        None => cli.socket.display().to_string(),
    };
    let mut client = match (&cli.tcp, &cli.cert, &cli.key, &cli.ca) {
        (Some(addr), Some(cert), Some(key), Some(ca)) => {
            client::connect_tls(addr, &cli.tls_name, [cert, key, ca], timeout).await?
        }
        _ => client::connect(&cli.socket, timeout).await?,
    };
    commands::execute_prepared(&mut client, cli, prepared, out)
        .await
        .map_err(|e| match e {
            error::Error::Refused(s) => client::classify(s, &daemon, timeout),
            other => other,
        })
}
