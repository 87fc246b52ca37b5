//! `vswitch-cni`: run by a container runtime with `CNI_*` in the environment and
//! the network configuration on stdin. Prints the result (or the spec's error
//! object) on stdout; exits 0 on success, 1 on error.
#![forbid(unsafe_code)]

use std::io::Read;

use vswitch_cni::config::{self, STDIN_MAX};
use vswitch_cni::env::{self, Command};
use vswitch_cni::error::{CniError, Result, INVALID_CONFIG, IO_FAILURE};
use vswitch_cni::{version, Request};

/// The version errors are reported in when the input names none we can use.
const FALLBACK_VERSION: &str = "1.1.0";

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(STDIN_MAX as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(IO_FAILURE, "cannot read stdin", e.to_string()))?;
    if buf.len() > STDIN_MAX {
        return Err(CniError::new(
            INVALID_CONFIG,
            "network configuration too large",
            format!("stdin holds more than {STDIN_MAX} bytes"),
        ));
    }
    Ok(buf)
}

fn get(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn execute(cmd: Command, stdin: &[u8]) -> Result<Option<serde_json::Value>> {
    if cmd == Command::Version {
        let v = config::version_hint(stdin).unwrap_or_else(|| "0.3.0".into());
        return Ok(Some(version::answer(&v)));
    }
    let raw: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            vswitch_cni::error::DECODE,
            "cannot decode the network configuration",
            format!("stdin is not JSON: {e}"),
        )
    })?;
    let conf = config::decode(stdin)?;
    version::check(&conf.cni_version)?;
    if matches!(cmd, Command::Status | Command::Gc) && !version::at_least(&conf.cni_version, 1, 1) {
        return Err(CniError::new(
            vswitch_cni::error::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!("{cmd:?} needs cniVersion 1.1.0, not {}", conf.cni_version),
        ));
    }
    if cmd == Command::Check && !version::at_least(&conf.cni_version, 0, 4) {
        return Err(CniError::new(
            vswitch_cni::error::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!("CHECK came with cniVersion 0.4.0, not {}", conf.cni_version),
        ));
    }
    conf.validate()?;
    let att = match cmd {
        Command::Add | Command::Del | Command::Check => Some(env::attachment(cmd, &get)?),
        _ => None,
    };
    let req = Request {
        command: cmd,
        raw,
        conf,
        path: env::cni_path(get("CNI_PATH").as_deref())?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(IO_FAILURE, "cannot start the runtime", e.to_string()))?;
    runtime.block_on(vswitch_cni::run(&req, att.as_ref()))
}

fn main() {
    let t0 = vswitch_cni::timing::start();
    let stdin = read_stdin();
    let hint = stdin
        .as_ref()
        .ok()
        .and_then(|b| config::version_hint(b))
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| FALLBACK_VERSION.to_owned());
    let outcome = stdin.and_then(|s| {
        let cmd = Command::parse(get("CNI_COMMAND").as_deref())?;
        execute(cmd, &s)
    });
    if std::env::var_os(vswitch_cni::timing::ENV).is_some() {
        vswitch_cni::timing::record("total", t0);
        eprintln!("vswitch-cni: timings {}", vswitch_cni::timing::report());
    }
    match outcome {
        Ok(Some(v)) => println!("{v}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("vswitch-cni: {e}");
            println!("{}", e.to_json(&hint));
            std::process::exit(1);
        }
    }
}
