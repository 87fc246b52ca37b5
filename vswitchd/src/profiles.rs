//! From the configuration's port profiles to `pmd-shims`' profiles.
//!
//! The profiles are described once, by [`ProfileConfig`] (the file's keys and
//! the API's `Port.params`); this is the hand-over to the driver layer, which
//! cannot take that type (`control` stays free of DPDK, `pmd-shims` of the
//! control plane) and adds what only the running daemon knows (af_packet's
//! queue pairs, one per worker).

use control::config::{PortConfig, ProfileConfig};
use pmd_shims::profile::PortProfile;

/// How a port is opened: as a DPDK device, or as a packet socket of the
/// switch's own on a kernel interface.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// A DPDK port of this profile.
    Ethdev(PortProfile),
    /// A packet socket on this kernel interface (profile `kernel`).
    Socket {
        /// The interface.
        iface: String,
    },
}

/// How `port` is opened. `workers` is the number of workers: af_packet spreads
/// received frames over its queue pairs (PACKET_FANOUT), so it gets one pair per
/// worker and every pair is polled.
pub fn port_backend(port: &PortConfig, workers: u16) -> Backend {
    Backend::Ethdev(match &port.profile {
        ProfileConfig::AfPacket { iface } => PortProfile::AfPacket {
            iface: iface.clone(),
            qpairs: workers.max(1),
        },
        ProfileConfig::Kernel { iface } => {
            return Backend::Socket {
                iface: iface.clone(),
            }
        }
        ProfileConfig::Tap { iface, mac } => PortProfile::Tap {
            iface: iface.clone(),
            mac: mac.clone(),
        },
        ProfileConfig::Pcap {
            rx_pcap,
            tx_pcap,
            rx_iface,
            tx_iface,
            infinite_rx,
        } => PortProfile::Pcap {
            rx_pcap: rx_pcap.clone(),
            tx_pcap: tx_pcap.clone(),
            rx_iface: rx_iface.clone(),
            tx_iface: tx_iface.clone(),
            infinite_rx: *infinite_rx,
        },
        ProfileConfig::Null { no_rx, size } => PortProfile::Null {
            no_rx: *no_rx,
            size: *size,
        },
        ProfileConfig::Ring {} => PortProfile::Ring {},
        ProfileConfig::VhostUser {
            path,
            client,
            queues,
            ..
        } => PortProfile::VhostUser {
            path: path.clone(),
            client: *client,
            queues: *queues,
        },
        ProfileConfig::VirtioUser {
            path,
            server,
            queues,
            mac,
        } => PortProfile::VirtioUser {
            path: path.clone(),
            server: *server,
            queues: *queues,
            mac: mac.clone(),
        },
        ProfileConfig::Mlx5 { pci, representors } => PortProfile::Mlx5 {
            pci: pci.clone(),
            representors: representors.clone(),
        },
    })
}

impl Backend {
    /// Checks that the port can be opened on this host: its PMD is installed,
    /// the interfaces, files and directories it names exist.
    ///
    /// # Errors
    /// The first problem found, naming the fix.
    pub fn check(&self) -> Result<(), pmd_shims::ProfileError> {
        match self {
            Backend::Ethdev(p) => p.check(),
            Backend::Socket { iface } => pmd_shims::SocketPort::check(iface),
        }
    }
}
