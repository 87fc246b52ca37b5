//! The one error type of the DPDK face, with DPDK's own error text.

use std::ffi::CStr;

use crate::ffi;
use crate::profile::ProfileError;

/// Everything that can go wrong talking to DPDK. Variants that wrap a DPDK failure
/// carry the errno-style code and `rte_strerror`'s text for it.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `Eal::init` was already called in this process; DPDK's EAL initialises once.
    #[error("DPDK EAL is already initialised in this process (it initialises once per process)")]
    EalAlreadyInitialized,
    /// An operation that needs the EAL ran before `Eal::init` succeeded.
    #[error("DPDK EAL is not initialised: call Eal::init first")]
    EalNotInitialized,
    /// `rte_eal_init` failed.
    #[error("rte_eal_init failed (rte_errno {code}): {msg}")]
    EalInit {
        /// `rte_errno` after the call.
        code: i32,
        /// `rte_strerror(code)`.
        msg: String,
    },
    /// `rte_eal_cleanup` failed.
    #[error("rte_eal_cleanup failed ({code}): {msg}")]
    EalCleanup {
        /// The negative errno returned.
        code: i32,
        /// `rte_strerror(-code)`.
        msg: String,
    },
    /// A string handed to DPDK contains a NUL byte.
    #[error("{what} {value:?} contains a NUL byte")]
    NulByte {
        /// Which argument.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// `rte_thread_register` failed (e.g. all `RTE_MAX_LCORE` lcore ids are taken).
    #[error("rte_thread_register failed (rte_errno {code}): {msg}")]
    ThreadRegister {
        /// `rte_errno` after the call.
        code: i32,
        /// `rte_strerror(code)`.
        msg: String,
    },
    /// `rte_pktmbuf_pool_create` failed (name taken, name too long, out of memory).
    #[error("cannot create mbuf pool {name:?} (rte_errno {code}): {msg}")]
    MempoolCreate {
        /// Pool name.
        name: String,
        /// `rte_errno` after the call.
        code: i32,
        /// `rte_strerror(code)`.
        msg: String,
    },
    /// `rte_dev_probe` failed for these device arguments.
    #[error("cannot probe DPDK device {devargs:?} ({code}): {msg}")]
    Probe {
        /// The device arguments given.
        devargs: String,
        /// The negative errno returned.
        code: i32,
        /// `rte_strerror(-code)`.
        msg: String,
    },
    /// A representor port's device arguments matched no ethdev port, or several.
    #[error("{devargs}: {found} ports match; a port names exactly one representor")]
    RepresentorMatch {
        /// The device arguments given.
        devargs: String,
        /// How many ports matched.
        found: usize,
    },
    /// The device probed but no ethdev port carries its name.
    #[error("no DPDK port named {name:?} after probing ({code}): {msg}")]
    PortNotFound {
        /// The port (device) name looked up.
        name: String,
        /// The negative errno returned.
        code: i32,
        /// `rte_strerror(-code)`.
        msg: String,
    },
    /// The PMD a device needs is not installed in EAL's plugin directory.
    #[error("DPDK driver {driver} is not installed ({path} missing): install the Debian package {package}")]
    MissingPmd {
        /// DPDK driver name, e.g. `net_pcap`.
        driver: String,
        /// Debian package that ships it, e.g. `librte-net-pcap23`.
        package: String,
        /// The shared object looked for.
        path: String,
    },
    /// An ethdev control-path call failed.
    #[error("{op} failed on port {port} ({code}): {msg}")]
    Ethdev {
        /// The DPDK function that failed.
        op: &'static str,
        /// Port name.
        port: String,
        /// The negative errno returned.
        code: i32,
        /// `rte_strerror(-code)`.
        msg: String,
    },
    /// More queues were asked for than the port offers.
    #[error("port {port} offers at most {max_rx} rx and {max_tx} tx queues, {rx} rx and {tx} tx were asked for")]
    TooManyQueues {
        /// Port name.
        port: String,
        /// Requested rx queues.
        rx: u16,
        /// Requested tx queues.
        tx: u16,
        /// The port's maximum rx queues.
        max_rx: u16,
        /// The port's maximum tx queues.
        max_tx: u16,
    },
    /// The port cannot be closed or reconfigured while queue handles are alive.
    #[error(
        "port {port} still has {queues} queue handle(s) alive: drop them (stop the workers) first"
    )]
    PortBusy {
        /// Port name.
        port: String,
        /// Live rx + tx queue handles.
        queues: usize,
    },
    /// The port must be stopped for this operation.
    #[error("port {port} is started: stop it first")]
    PortStarted {
        /// Port name.
        port: String,
    },
    /// A port profile is not usable on this host.
    #[error(transparent)]
    Profile(ProfileError),
}

impl From<ProfileError> for DpdkError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::MissingPmd {
                driver,
                package,
                path,
            } => DpdkError::MissingPmd {
                driver,
                package,
                path,
            },
            other => DpdkError::Profile(other),
        }
    }
}

/// `rte_strerror(code)` for a positive errno-style code (DPDK's own codes included).
pub fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror accepts any int and returns a pointer to a static or
    // thread-local NUL-terminated string, valid until the next call on this thread;
    // we copy it out at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// This thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; no preconditions.
    unsafe { ffi::shim_rte_errno() }
}

/// `(code, message)` for a negative-errno return value.
pub(crate) fn neg_errno(ret: i32) -> (i32, String) {
    (ret, strerror(-ret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_pmd_from_a_profile_check_keeps_its_own_variant() {
        let e: DpdkError = ProfileError::MissingPmd {
            driver: "net_pcap".into(),
            package: "librte-net-pcap23".into(),
            path: "/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_pcap.so.23".into(),
        }
        .into();
        assert!(
            matches!(&e, DpdkError::MissingPmd { package, .. } if package == "librte-net-pcap23")
        );
        assert!(e
            .to_string()
            .ends_with("install the Debian package librte-net-pcap23"));
        let other: DpdkError = ProfileError::PcapNoRx.into();
        assert!(matches!(other, DpdkError::Profile(ProfileError::PcapNoRx)));
    }

    #[test]
    fn strerror_has_dpdk_and_libc_text() {
        assert_eq!(strerror(22), "Invalid argument");
        assert!(
            !strerror(1001).is_empty(),
            "DPDK's own codes (E_RTE_SECONDARY) too"
        );
    }

    #[test]
    fn handles_are_send() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<crate::Mbuf>();
        send::<crate::PortRxQueue>();
        send::<crate::PortTxQueue>();
        send::<crate::MbufAlloc>();
        send::<crate::Port>();
        send::<std::sync::Arc<crate::Mempool>>();
        sync::<crate::Mempool>();
    }
}
