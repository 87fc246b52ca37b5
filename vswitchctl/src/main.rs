//! `vswitchctl`: exit 0 on success, 1 when the server refuses (its message on
//! stderr), 2 on a usage error, 3 when the daemon cannot be reached or does not
//! answer; see [`vswitchctl::error`].
#![forbid(unsafe_code)]

use std::io::Write;

use clap::Parser;
use vswitchctl::cli::Cli;
use vswitchctl::error::Error;

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
    // What is still buffered can fail too (a full disk behind `> file`); a
    // closed pipe is as quiet here as in the commands.
    let result = result.and_then(|()| out.flush().map_err(Error::from));
    match result {
        Ok(()) | Err(Error::BrokenPipe) => {}
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
