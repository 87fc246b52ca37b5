//! What is behind a running port: a DPDK ethdev or a packet socket.
//!
//! The control side asks both the same things (link, counters, MAC, MTU) and
//! closes both; only an ethdev has a DPDK port id.

use anyhow::{anyhow, Result};
use pmd_shims::{LinkStatus, Port, PortStats, SocketPort};

/// A running port's device.
#[derive(Debug)]
pub enum PortDevice {
    /// A DPDK port (every profile but `kernel`).
    Ethdev(Port),
    /// A packet socket on a kernel interface (profile `kernel`).
    Socket(SocketPort),
}

impl PortDevice {
    /// Link state, read without waiting.
    pub fn link(&self) -> LinkStatus {
        match self {
            PortDevice::Ethdev(p) => p.link(),
            PortDevice::Socket(s) => s.link(),
        }
    }

    /// The device's own counters.
    pub fn stats(&self) -> PortStats {
        match self {
            PortDevice::Ethdev(p) => p.stats(),
            PortDevice::Socket(s) => s.stats(),
        }
    }

    /// DPDK's port id; `None` for a packet socket, which has none.
    pub fn ethdev_id(&self) -> Option<u16> {
        match self {
            PortDevice::Ethdev(p) => Some(p.id()),
            PortDevice::Socket(_) => None,
        }
    }

    /// The MAC address (zeros if the device cannot tell).
    pub fn mac(&self) -> [u8; 6] {
        match self {
            PortDevice::Ethdev(p) => p.mac(),
            PortDevice::Socket(s) => s.mac(),
        }
    }

    /// The MTU the port really has (`None`: frames of any length).
    pub fn mtu(&self) -> Option<u16> {
        match self {
            PortDevice::Ethdev(p) => p.mtu(),
            PortDevice::Socket(s) => s.mtu(),
        }
    }

    /// DPDK's recorded MTU; for a socket, the interface's.
    pub fn dpdk_mtu(&self) -> Option<u16> {
        match self {
            PortDevice::Ethdev(p) => p.dpdk_mtu(),
            PortDevice::Socket(s) => s.mtu(),
        }
    }

    /// Reads the MTU again and makes the tx queues hold frames to it.
    pub fn refresh_mtu(&self) -> Option<u16> {
        match self {
            PortDevice::Ethdev(p) => p.refresh_mtu(),
            PortDevice::Socket(s) => s.refresh_mtu(),
        }
    }

    /// Stops and closes the device. Call once no worker holds its queues.
    ///
    /// # Errors
    /// DPDK's refusal to close an ethdev. A socket closes when its queues and
    /// this handle are gone, which they are by now.
    pub fn close(self, name: &str) -> Result<()> {
        match self {
            PortDevice::Ethdev(mut port) => {
                if let Err(e) = port.stop() {
                    tracing::warn!(port = %name, "stop: {e}");
                }
                port.close()
                    .map_err(|e| anyhow!("port {name:?}: close: {e}"))
            }
            PortDevice::Socket(s) => {
                drop(s);
                Ok(())
            }
        }
    }
}
