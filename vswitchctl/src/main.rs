//! `vswitchctl`: exit 0 on success, 1 when the server refuses (its message on
//! stderr), 2 on a usage error, 3 when the socket cannot be reached.
#![forbid(unsafe_code)]

use std::io::Write;

use clap::Parser;
use vswitchctl::cli::Cli;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vswitchctl: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = runtime.block_on(vswitchctl::run(&cli, &mut out));
    let _ = out.flush();
    if let Err(e) = result {
        eprintln!("vswitchctl: {e}");
        std::process::exit(e.exit_code());
    }
}
