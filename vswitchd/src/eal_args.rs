//! EAL command line from the `[eal]` section.

use control::config::{ProfileConfig, VswitchConfig};

/// The `--file-prefix` used when the configuration asks for no shared files.
fn private_prefix() -> String {
    format!("vswitchd{}", std::process::id())
}

/// The runtime directory EAL creates even under `--no-shconf` or `--in-memory` when
/// `cfg` asked for no shared files; `vswitchd` removes it at exit so no run leaves
/// one behind.
pub fn private_runtime_dir(cfg: &VswitchConfig) -> Option<std::path::PathBuf> {
    if !cfg.eal.in_memory {
        return None;
    }
    // EAL's rule: /var/run/dpdk for root, $XDG_RUNTIME_DIR/dpdk (or /tmp/dpdk) otherwise.
    let base = if real_uid() == Some(0) {
        std::path::PathBuf::from("/var/run/dpdk")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/tmp".into())
            .join("dpdk")
    };
    Some(base.join(private_prefix()))
}

/// This process's real user id, which EAL asks `getuid()` for; read from
/// `/proc/self/status` (`Uid:` real, effective, saved, filesystem) since this crate
/// has no unsafe code, and not from `$USER`, which systemd and CI runners may not
/// set.
fn real_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The argument vector for `rte_eal_init`.
///
/// Only the main (control) thread is an EAL lcore (`-l main_core`): workers are
/// ordinary threads that `vswitchd` pins itself and registers with
/// `rte_thread_register`, so ports and workers can change without restarting EAL.
pub fn eal_args(cfg: &VswitchConfig) -> Vec<String> {
    let eal = &cfg.eal;
    let mut args = vec![
        "vswitchd".to_owned(),
        "-l".to_owned(),
        eal.main_core.to_string(),
        "-m".to_owned(),
        eal.memory_mb.to_string(),
        format!("--log-level={}", eal.log_level),
    ];
    if !eal.hugepages {
        args.push("--no-huge".into());
    }
    if eal.in_memory {
        // DPDK 22.11 refuses --in-memory with --no-huge (which implies legacy memory);
        // --no-shconf gives the same isolation there. Either way EAL still makes a
        // runtime directory named by the prefix: a per-process one keeps instances
        // apart and tells us which directory to remove at exit.
        args.push(
            if eal.hugepages {
                "--in-memory"
            } else {
                "--no-shconf"
            }
            .into(),
        );
        args.push(format!("--file-prefix={}", private_prefix()));
    } else {
        // A per-instance prefix keeps several switches apart and keeps the runtime
        // directory with EAL's telemetry socket (`dpdk-telemetry.py -f <prefix>`).
        // Secondary processes (dpdk-proc-info, dpdk-dumpcap) cannot attach: the
        // workers register as non-EAL threads, which turns multi-process off.
        let prefix = eal.file_prefix.clone().unwrap_or_else(private_prefix);
        args.push(format!("--file-prefix={prefix}"));
    }
    // Scanning PCI is slow and pointless without a PCI port; mlx5 needs it.
    let wants_pci = cfg
        .ports
        .iter()
        .any(|p| matches!(p.profile, ProfileConfig::Mlx5 { .. }));
    if !wants_pci {
        args.push("--no-pci".into());
    }
    args.extend(eal.extra_args.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_huge_in_memory_means_no_shconf() {
        let cfg = VswitchConfig::parse(
            "[eal]\nmemory_mb = 256\nin_memory = true\n[dataplane]\nworkers=[1]\n",
            2,
        )
        .unwrap();
        let a = eal_args(&cfg);
        for want in [
            "-l",
            "0",
            "-m",
            "256",
            "--no-huge",
            "--no-shconf",
            "--no-pci",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
    }

    #[test]
    fn hugepages_with_prefix() {
        let cfg = VswitchConfig::parse(
            "[eal]\nhugepages = true\nfile_prefix = \"sw1\"\n[dataplane]\nworkers=[1]\n",
            2,
        )
        .unwrap();
        let a = eal_args(&cfg);
        assert!(!a.contains(&"--no-huge".to_owned()));
        assert!(a.contains(&"--file-prefix=sw1".to_owned()));
        assert_eq!(private_runtime_dir(&cfg), None);
    }

    #[test]
    fn hugepages_in_memory_gets_a_private_prefix_to_clean_up() {
        let cfg = VswitchConfig::parse(
            "[eal]\nhugepages = true\nin_memory = true\n[dataplane]\nworkers=[1]\n",
            2,
        )
        .unwrap();
        let a = eal_args(&cfg);
        assert!(a.contains(&"--in-memory".to_owned()), "{a:?}");
        assert!(!a.contains(&"--no-huge".to_owned()));
        let prefix = format!("--file-prefix={}", private_prefix());
        assert!(a.contains(&prefix), "{a:?}");
        let dir = private_runtime_dir(&cfg).expect("a directory to remove");
        assert!(dir.ends_with(private_prefix()), "{dir:?}");
        // Root's runtime directories live under /var/run/dpdk whatever $USER says
        // (CI runners and systemd may not set it).
        let root = std::process::Command::new("id")
            .arg("-ru")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        assert_eq!(real_uid() == Some(0), root);
        if root {
            assert!(dir.starts_with("/var/run/dpdk"), "{dir:?}");
        }
    }
}
