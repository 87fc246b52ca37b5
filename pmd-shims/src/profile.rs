//! One profile per PMD: the devargs string that creates the port and a host check
//! that explains, before EAL sees it, why a port cannot work here.
//!
//! DPDK's own failure for a missing interface, capture file or driver is a log line
//! and `-EINVAL`/`-ENOTSUP`; an operator needs "install librte-net-pcap23" or
//! "interface veth1 does not exist". [`PortProfile::check`] turns host facts into
//! those errors. In the default, static build every profile's driver is linked into
//! the binary (`dpdk_sys::LINKED_DRIVERS`) and cannot be missing. In a shared build
//! (`VSWITCH_DPDK_LINK=shared`) drivers are shared objects EAL loads from its plugin
//! directory (`RTE_EAL_PMD_PATH`, baked into DPDK at build time and read by
//! dpdk-sys), so a missing driver is a missing file there, and each maps to its
//! Debian package.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The TPACKET ring frame size of an af_packet port (`framesz`).
pub const AF_PACKET_FRAME_SIZE: usize = 2048;
/// The longest frame an af_packet port sends: its ring frame less the
/// `TPACKET2_HDRLEN - sizeof(sockaddr_ll)` (32) bytes the PMD keeps in front.
/// `net_af_packet` frees a longer one, counts it in `oerrors`, and reports it
/// sent.
pub const AF_PACKET_MAX_FRAME: usize = AF_PACKET_FRAME_SIZE - 32;

/// ABI major of Debian's DPDK 22.11 runtime packages (`librte-net-pcap23`) and of
/// the plugin file suffix (`.so.23`).
const ABI: &str = "23";

/// Why a profile cannot work on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The PMD's shared object is not in EAL's plugin directory.
    #[error("DPDK driver {driver} is not installed ({path} missing): install the Debian package {package}")]
    MissingPmd {
        /// DPDK driver name.
        driver: String,
        /// Debian package that ships it.
        package: String,
        /// The shared object looked for.
        path: String,
    },
    /// A kernel interface the profile names does not exist.
    #[error("network interface {iface:?} does not exist (no /sys/class/net/{iface})")]
    IfaceMissing {
        /// The interface name.
        iface: String,
    },
    /// An interface name the kernel would refuse.
    #[error("invalid network interface name {iface:?}: {reason}")]
    IfaceName {
        /// The interface name.
        iface: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A pcap file to replay does not exist.
    #[error("pcap file {} does not exist", path.display())]
    PcapMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// A pcap profile with nothing to receive from.
    #[error("pcap port needs a receive side: rx_pcap or rx_iface")]
    PcapNoRx,
    /// `infinite_rx` only replays a file.
    #[error("pcap infinite_rx needs rx_pcap (a file to replay)")]
    PcapInfiniteNeedsFile,
    /// The directory a socket or output file is to be created in does not exist.
    #[error("directory {} for {} does not exist", dir.display(), path.display())]
    DirMissing {
        /// The file to create.
        path: PathBuf,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// virtio_user in client mode connects to a socket that is not there.
    #[error("vhost-user socket {} does not exist (virtio_user as client connects to an existing socket; start the vhost-user side first or use server mode)", path.display())]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// A device needing hardware that is absent.
    #[error("mlx5 needs hardware: PCI device {pci} not found (no /sys/bus/pci/devices/{pci})")]
    PciDeviceMissing {
        /// The PCI address.
        pci: String,
    },
    /// `/dev/net/tun` is missing (no tun module or not in the container).
    #[error("net_tap needs /dev/net/tun, which does not exist (load the tun module)")]
    TunMissing,
    /// A queue count of zero.
    #[error("{what} must be at least 1")]
    ZeroQueues {
        /// Which count.
        what: &'static str,
    },
    /// A value that would break the comma/equals syntax of DPDK devargs.
    #[error(
        "{what} {value:?} cannot be passed in DPDK device arguments (contains ',', '=' or a NUL)"
    )]
    DevargSyntax {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// An mlx5 port's `representors` names a range, a list, or no representor.
    #[error(
        "mlx5 representors {value:?} must name one representor (vf3, pf0vf3, sf2, pf1, [65535]): \
         each representor is a port of its own"
    )]
    Representor {
        /// The value (its first 40 characters).
        value: String,
    },
}

/// A port kind and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortProfile {
    /// `net_af_packet` on an existing kernel interface (veth end, physical NIC).
    AfPacket {
        /// Kernel interface.
        iface: String,
        /// Queue pairs (PACKET_FANOUT groups).
        qpairs: u16,
    },
    /// `net_tap`: the PMD creates a kernel tap interface.
    Tap {
        /// Name of the interface to create.
        iface: String,
        /// `"xx:xx:xx:xx:xx:xx"` or `"fixed"`; `None` for a random MAC.
        mac: Option<String>,
    },
    /// `net_pcap`: capture files or kernel interfaces through libpcap.
    Pcap {
        /// File to read packets from.
        rx_pcap: Option<PathBuf>,
        /// File to write sent packets to.
        tx_pcap: Option<PathBuf>,
        /// Interface to receive from.
        rx_iface: Option<String>,
        /// Interface to send to.
        tx_iface: Option<String>,
        /// Replay `rx_pcap` forever from memory (the benchmark generator).
        infinite_rx: bool,
    },
    /// `net_null`: a source of empty packets, or a sink with `no_rx`.
    Null {
        /// Receive nothing (a pure sink).
        no_rx: bool,
        /// Size of generated packets.
        size: Option<u32>,
    },
    /// `net_ring`: an in-memory loopback (what is sent is received).
    Ring {},
    /// `net_vhost`: a vhost-user socket for a DPDK pod (virtio in the guest).
    VhostUser {
        /// Socket path.
        path: PathBuf,
        /// Connect to the socket instead of listening.
        client: bool,
        /// Queue pairs.
        queues: u16,
    },
    /// `net_virtio_user`: the virtio side of a vhost-user socket (or `/dev/vhost-net`).
    VirtioUser {
        /// Socket path.
        path: PathBuf,
        /// Listen on the socket instead of connecting.
        server: bool,
        /// Queue pairs.
        queues: u16,
        /// MAC address.
        mac: Option<String>,
    },
    /// mlx5 PCI device (ConnectX / BlueField): the device's own port (the
    /// uplink, `p0` on a BlueField), or one representor of it.
    Mlx5 {
        /// PCI address, `0000:03:00.0`.
        pci: String,
        /// One representor, as DPDK's `representor=` devarg names it: `vf3`,
        /// `pf0vf3`, `sf2`, `pf1`, `[65535]` (BlueField's host PF). One per
        /// port: each representor is a switch port of its own.
        representors: Option<String>,
    },
}

/// EAL's plugin directory (`RTE_EAL_PMD_PATH` of the DPDK build).
pub fn plugin_dir() -> PathBuf {
    let raw = dpdk_sys::RTE_EAL_PMD_PATH;
    let bytes = raw.strip_suffix(b"\0").unwrap_or(raw);
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Shared-object stem and Debian package of each driver.
fn pmd_package(driver: &str) -> Option<(&'static str, &'static str)> {
    Some(match driver {
        "net_af_packet" => ("librte_net_af_packet", "librte-net-af-packet23"),
        "net_tap" => ("librte_net_tap", "librte-net-tap23"),
        "net_pcap" => ("librte_net_pcap", "librte-net-pcap23"),
        "net_null" => ("librte_net_null", "librte-net-null23"),
        "net_ring" => ("librte_net_ring", "librte-net-ring23"),
        "net_vhost" => ("librte_net_vhost", "librte-net-vhost23"),
        "net_virtio_user" => ("librte_net_virtio", "librte-net-virtio23"),
        "mlx5_pci" => ("librte_net_mlx5", "librte-net-mlx5-23"),
        _ => return None,
    })
}

/// `Some(MissingPmd)` when `driver`'s shared object is absent from `dir`. The ring
/// PMD is linked into every DPDK application that wants it and always counts as
/// present.
fn missing_pmd(driver: &str, dir: &Path) -> Option<ProfileError> {
    if driver == "net_ring" {
        return None;
    }
    let (stem, package) = pmd_package(driver)?;
    let plain = dir.join(format!("{stem}.so"));
    let versioned = dir.join(format!("{stem}.so.{ABI}"));
    if plain.exists() || versioned.exists() {
        return None;
    }
    Some(ProfileError::MissingPmd {
        driver: driver.to_owned(),
        package: package.to_owned(),
        path: versioned.display().to_string(),
    })
}

/// For a device name like `net_pcap3`, the missing-driver error if its PMD is absent.
pub(crate) fn missing_pmd_for_name(name: &str, dir: &Path) -> Option<ProfileError> {
    let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
    missing_pmd(driver, dir)
}

/// Whether `driver` is linked into this binary (a static build), so that EAL has it
/// whatever its plugin directory holds.
pub(crate) fn linked_in(driver: &str) -> bool {
    let driver = driver.trim_end_matches(|c: char| c.is_ascii_digit());
    pmd_package(driver).is_some_and(|(stem, _)| dpdk_sys::LINKED_DRIVERS.contains(&stem))
}

/// For a driver or device name (`net_pcap`, `net_pcap3`), the missing-driver error
/// on this host: never for a driver linked into the binary, otherwise when its
/// shared object is absent from EAL's plugin directory.
pub(crate) fn missing_pmd_here(name: &str) -> Option<ProfileError> {
    if linked_in(name) {
        return None;
    }
    missing_pmd_for_name(name, &plugin_dir())
}

fn devarg_ok(what: &'static str, value: &str) -> Result<(), ProfileError> {
    if value.contains([',', '=', '\0']) {
        return Err(ProfileError::DevargSyntax {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// The representor a port's devargs name (`…,representor=pf0vf3,…`), if any.
pub fn representor_of(devargs: &str) -> Option<&str> {
    devargs
        .split(',')
        .find_map(|kv| kv.strip_prefix("representor="))
}

/// `r` names exactly one representor: `[c<n>][pf<n>](vf|sf)<n>`, `pf<n>`, or a
/// bare VF number (`<n>`, `[<n>]`), each number at most 65535. A range or a list
/// would probe several ethdev ports for one switch port, and all but one of
/// them would take traffic that nobody polls.
fn one_representor(r: &str) -> Result<(), ProfileError> {
    fn number(s: &str) -> Option<&str> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, rest) = s.split_at(end);
        (!n.is_empty() && n.len() <= 5 && n.parse::<u32>().ok()? <= 65535).then_some(rest)
    }
    fn part<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
        s.strip_prefix(tag).and_then(number)
    }
    let bare = r
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(r);
    let ok = if number(bare) == Some("") {
        true
    } else {
        let s = part(r, "c").unwrap_or(r);
        let (s, pf) = part(s, "pf").map_or((s, false), |rest| (rest, true));
        let rest = part(s, "vf").or_else(|| part(s, "sf"));
        match rest {
            Some(rest) => rest.is_empty(),
            None => pf && s.is_empty(),
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ProfileError::Representor {
            value: r.chars().take(40).collect(),
        })
    }
}

fn path_ok(what: &'static str, path: &Path) -> Result<(), ProfileError> {
    devarg_ok(what, &path.to_string_lossy())
}

fn iface_name_ok(iface: &str) -> Result<(), ProfileError> {
    let reason = if iface.is_empty() {
        "empty"
    } else if iface.len() > 15 {
        "longer than 15 bytes (IFNAMSIZ)"
    } else if iface.contains(['/', ' ', ':', ',', '=']) || iface.contains('\0') {
        "contains '/', ':', ',', '=', a space or a NUL"
    } else {
        return Ok(());
    };
    Err(ProfileError::IfaceName {
        iface: iface.to_owned(),
        reason,
    })
}

pub(crate) fn iface_exists(iface: &str) -> Result<(), ProfileError> {
    iface_name_ok(iface)?;
    if Path::new("/sys/class/net").join(iface).exists() {
        Ok(())
    } else {
        Err(ProfileError::IfaceMissing {
            iface: iface.to_owned(),
        })
    }
}

fn parent_exists(path: &Path) -> Result<(), ProfileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ProfileError::DirMissing {
            path: path.to_owned(),
            dir: dir.to_owned(),
        })
    }
}

fn nonzero(what: &'static str, n: u16) -> Result<(), ProfileError> {
    if n == 0 {
        Err(ProfileError::ZeroQueues { what })
    } else {
        Ok(())
    }
}

impl PortProfile {
    /// The DPDK driver name. Virtual devices are created as `<driver><instance>`;
    /// mlx5 is a PCI device (driver `mlx5_pci`), addressed by its PCI address.
    pub fn driver(&self) -> &'static str {
        match self {
            PortProfile::AfPacket { .. } => "net_af_packet",
            PortProfile::Tap { .. } => "net_tap",
            PortProfile::Pcap { .. } => "net_pcap",
            PortProfile::Null { .. } => "net_null",
            PortProfile::Ring {} => "net_ring",
            PortProfile::VhostUser { .. } => "net_vhost",
            PortProfile::VirtioUser { .. } => "net_virtio_user",
            PortProfile::Mlx5 { .. } => "mlx5_pci",
        }
    }

    /// The Debian package that ships this profile's PMD.
    pub fn package(&self) -> &'static str {
        pmd_package(self.driver()).map_or("", |(_, p)| p)
    }

    /// The devargs string for `rte_dev_probe`, e.g.
    /// `net_af_packet0,iface=veth1,qpairs=1,...` or `0000:03:00.0,representor=[0-3]`.
    /// The port's name is the part before the first comma.
    pub fn devargs(&self, instance: u32) -> String {
        let mut s = match self {
            PortProfile::Mlx5 { pci, .. } => pci.clone(),
            _ => format!("{}{}", self.driver(), instance),
        };
        // Writing to a String cannot fail.
        match self {
            PortProfile::AfPacket { iface, qpairs } => {
                // 4096 frames per ring instead of the PMD's 512: a worker that loses its
                // core for a few milliseconds (a shared 2-core machine) must not make
                // the kernel drop a burst of a pod's TCP segments. 8 MiB per ring.
                let _ = write!(
                    s,
                    ",iface={iface},qpairs={qpairs},blocksz=4096,framesz={AF_PACKET_FRAME_SIZE},framecnt=4096"
                );
            }
            PortProfile::Tap { iface, mac } => {
                let _ = write!(s, ",iface={iface}");
                if let Some(mac) = mac {
                    let _ = write!(s, ",mac={mac}");
                }
            }
            PortProfile::Pcap {
                rx_pcap,
                tx_pcap,
                rx_iface,
                tx_iface,
                infinite_rx,
            } => {
                if let Some(p) = rx_pcap {
                    let _ = write!(s, ",rx_pcap={}", p.display());
                }
                if let Some(p) = tx_pcap {
                    let _ = write!(s, ",tx_pcap={}", p.display());
                }
                if let Some(i) = rx_iface {
                    let _ = write!(s, ",rx_iface={i}");
                }
                if let Some(i) = tx_iface {
                    let _ = write!(s, ",tx_iface={i}");
                }
                if *infinite_rx {
                    s.push_str(",infinite_rx=1");
                }
            }
            PortProfile::Null { no_rx, size } => {
                if let Some(size) = size {
                    let _ = write!(s, ",size={size}");
                }
                if *no_rx {
                    s.push_str(",no-rx=1");
                }
            }
            PortProfile::Ring {} => {}
            PortProfile::VhostUser {
                path,
                client,
                queues,
            } => {
                let _ = write!(s, ",iface={},queues={queues}", path.display());
                if *client {
                    s.push_str(",client=1");
                }
            }
            PortProfile::VirtioUser {
                path,
                server,
                queues,
                mac,
            } => {
                let _ = write!(s, ",path={},queues={queues}", path.display());
                if *server {
                    s.push_str(",server=1");
                }
                if let Some(mac) = mac {
                    let _ = write!(s, ",mac={mac}");
                }
            }
            PortProfile::Mlx5 { representors, .. } => {
                if let Some(r) = representors {
                    let _ = write!(s, ",representor={r}");
                }
            }
        }
        s
    }

    /// Checks that the profile can work on this host: its PMD is installed, the
    /// interfaces, files and directories it names exist.
    ///
    /// # Errors
    /// The first problem found, as a [`ProfileError`] that names the fix.
    pub fn check(&self) -> Result<(), ProfileError> {
        self.check_syntax()?;
        if let Some(e) = missing_pmd_here(self.driver()) {
            return Err(e);
        }
        self.check_host()
    }

    /// [`PortProfile::check`] as a shared build does it, against a given plugin
    /// directory (tests, or EAL run with `-d`).
    ///
    /// # Errors
    /// As [`PortProfile::check`].
    pub fn check_in(&self, plugin_dir: &Path) -> Result<(), ProfileError> {
        self.check_syntax()?;
        if let Some(e) = missing_pmd(self.driver(), plugin_dir) {
            return Err(e);
        }
        self.check_host()
    }

    /// The host facts the profile names: interfaces, files, directories, devices.
    fn check_host(&self) -> Result<(), ProfileError> {
        match self {
            PortProfile::AfPacket { iface, .. } => iface_exists(iface),
            PortProfile::Tap { .. } => {
                if Path::new("/dev/net/tun").exists() {
                    Ok(())
                } else {
                    Err(ProfileError::TunMissing)
                }
            }
            PortProfile::Pcap {
                rx_pcap,
                tx_pcap,
                rx_iface,
                tx_iface,
                ..
            } => {
                if let Some(p) = rx_pcap {
                    if !p.is_file() {
                        return Err(ProfileError::PcapMissing { path: p.clone() });
                    }
                }
                if let Some(p) = tx_pcap {
                    parent_exists(p)?;
                }
                if let Some(i) = rx_iface {
                    iface_exists(i)?;
                }
                if let Some(i) = tx_iface {
                    iface_exists(i)?;
                }
                Ok(())
            }
            PortProfile::Null { .. } | PortProfile::Ring {} => Ok(()),
            PortProfile::VhostUser { path, .. } => parent_exists(path),
            PortProfile::VirtioUser { path, server, .. } => {
                if *server {
                    parent_exists(path)
                } else if path.exists() {
                    Ok(())
                } else {
                    Err(ProfileError::SocketMissing { path: path.clone() })
                }
            }
            PortProfile::Mlx5 { pci, .. } => {
                if Path::new("/sys/bus/pci/devices").join(pci).exists() {
                    Ok(())
                } else {
                    Err(ProfileError::PciDeviceMissing { pci: pci.clone() })
                }
            }
        }
    }

    /// Host-independent checks: values that fit the devargs syntax, queue counts.
    fn check_syntax(&self) -> Result<(), ProfileError> {
        match self {
            PortProfile::AfPacket { iface, qpairs } => {
                iface_name_ok(iface)?;
                nonzero("af_packet qpairs", *qpairs)
            }
            PortProfile::Tap { iface, mac } => {
                iface_name_ok(iface)?;
                mac.as_deref().map_or(Ok(()), |m| devarg_ok("tap mac", m))
            }
            PortProfile::Pcap {
                rx_pcap,
                tx_pcap,
                rx_iface,
                tx_iface,
                infinite_rx,
            } => {
                if rx_pcap.is_none() && rx_iface.is_none() {
                    return Err(ProfileError::PcapNoRx);
                }
                if *infinite_rx && rx_pcap.is_none() {
                    return Err(ProfileError::PcapInfiniteNeedsFile);
                }
                for p in [rx_pcap, tx_pcap].into_iter().flatten() {
                    path_ok("pcap path", p)?;
                }
                for i in [rx_iface, tx_iface].into_iter().flatten() {
                    iface_name_ok(i)?;
                }
                Ok(())
            }
            PortProfile::Null { .. } | PortProfile::Ring {} => Ok(()),
            PortProfile::VhostUser { path, queues, .. } => {
                path_ok("vhost-user socket path", path)?;
                nonzero("vhost-user queues", *queues)
            }
            PortProfile::VirtioUser {
                path, queues, mac, ..
            } => {
                path_ok("virtio_user path", path)?;
                if let Some(m) = mac {
                    devarg_ok("virtio_user mac", m)?;
                }
                nonzero("virtio_user queues", *queues)
            }
            PortProfile::Mlx5 { pci, representors } => {
                devarg_ok("PCI address", pci)?;
                if let Some(r) = representors {
                    devarg_ok("mlx5 representors", r)?;
                    one_representor(r)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary plugin directory holding exactly the given (empty) shared
    /// objects; removed on drop.
    struct FakePluginDir(PathBuf);

    impl std::ops::Deref for FakePluginDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for FakePluginDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn plugin_dir_with(tag: &str, files: &[&str]) -> FakePluginDir {
        let dir =
            std::env::temp_dir().join(format!("pmd-shims-plugins-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        FakePluginDir(dir)
    }

    fn pcap(rx: Option<&str>, infinite_rx: bool) -> PortProfile {
        PortProfile::Pcap {
            rx_pcap: rx.map(PathBuf::from),
            tx_pcap: None,
            rx_iface: None,
            tx_iface: None,
            infinite_rx,
        }
    }

    #[test]
    fn devargs_strings() {
        let cases = [
            (
                PortProfile::AfPacket {
                    iface: "veth1".into(),
                    qpairs: 1,
                },
                "net_af_packet0,iface=veth1,qpairs=1,blocksz=4096,framesz=2048,framecnt=4096",
            ),
            (
                PortProfile::Tap {
                    iface: "dtap0".into(),
                    mac: Some("fixed".into()),
                },
                "net_tap0,iface=dtap0,mac=fixed",
            ),
            (
                PortProfile::Tap {
                    iface: "dtap0".into(),
                    mac: None,
                },
                "net_tap0,iface=dtap0",
            ),
            (pcap(Some("/x"), true), "net_pcap0,rx_pcap=/x,infinite_rx=1"),
            (
                PortProfile::Pcap {
                    rx_pcap: None,
                    tx_pcap: Some("/out.pcap".into()),
                    rx_iface: Some("eth0".into()),
                    tx_iface: Some("eth1".into()),
                    infinite_rx: false,
                },
                "net_pcap0,tx_pcap=/out.pcap,rx_iface=eth0,tx_iface=eth1",
            ),
            (
                PortProfile::Null {
                    no_rx: true,
                    size: Some(64),
                },
                "net_null0,size=64,no-rx=1",
            ),
            (
                PortProfile::Null {
                    no_rx: false,
                    size: None,
                },
                "net_null0",
            ),
            (PortProfile::Ring {}, "net_ring0"),
            (
                PortProfile::VhostUser {
                    path: "/run/vsw/pod1.sock".into(),
                    client: true,
                    queues: 2,
                },
                "net_vhost0,iface=/run/vsw/pod1.sock,queues=2,client=1",
            ),
            (
                PortProfile::VirtioUser {
                    path: "/tmp/vhu.sock".into(),
                    server: true,
                    queues: 1,
                    mac: Some("02:00:00:00:00:01".into()),
                },
                "net_virtio_user0,path=/tmp/vhu.sock,queues=1,server=1,mac=02:00:00:00:00:01",
            ),
            (
                PortProfile::Mlx5 {
                    pci: "0000:03:00.0".into(),
                    representors: Some("pf0vf3".into()),
                },
                "0000:03:00.0,representor=pf0vf3",
            ),
        ];
        for (profile, want) in cases {
            assert_eq!(profile.devargs(0), want, "{profile:?}");
        }
        assert_eq!(
            pcap(Some("/x"), true).devargs(3),
            "net_pcap3,rx_pcap=/x,infinite_rx=1"
        );
        assert_eq!(
            PortProfile::Mlx5 {
                pci: "0000:03:00.0".into(),
                representors: None
            }
            .devargs(7),
            "0000:03:00.0",
            "a PCI device is named by its address, not an instance"
        );
    }

    #[test]
    fn a_static_build_links_every_profiles_driver() {
        let drivers = [
            "net_af_packet",
            "net_tap",
            "net_pcap",
            "net_null",
            "net_ring",
            "net_vhost",
            "net_virtio_user",
            "mlx5_pci",
        ];
        if dpdk_sys::LINKED_DRIVERS.is_empty() {
            // A shared build (VSWITCH_DPDK_LINK=shared): EAL's plugins.
            assert!(drivers.iter().all(|d| !linked_in(d)));
            return;
        }
        for d in drivers {
            assert!(linked_in(d), "{d} is not linked in");
            assert!(linked_in(&format!("{d}7")), "{d}7 is not linked in");
        }
        assert!(!linked_in("net_i40e"));
        // Linked in, an empty plugin directory does not make it missing.
        let empty = plugin_dir_with("linked", &[]);
        let null = PortProfile::Null {
            no_rx: true,
            size: None,
        };
        assert!(matches!(
            null.check_in(&empty.0),
            Err(ProfileError::MissingPmd { .. })
        ));
        assert_eq!(null.check(), Ok(()));
    }

    #[test]
    fn drivers_and_packages() {
        let p = PortProfile::AfPacket {
            iface: "x".into(),
            qpairs: 1,
        };
        assert_eq!(p.driver(), "net_af_packet");
        assert_eq!(p.package(), "librte-net-af-packet23");
        let m = PortProfile::Mlx5 {
            pci: "0000:03:00.0".into(),
            representors: None,
        };
        assert_eq!(m.package(), "librte-net-mlx5-23");
    }

    #[test]
    fn missing_iface_is_named() {
        let p = PortProfile::AfPacket {
            iface: "vswnoexist0".into(),
            qpairs: 1,
        };
        let dir = plugin_dir_with("iface", &["librte_net_af_packet.so.23"]);
        assert_eq!(
            p.check_in(&dir),
            Err(ProfileError::IfaceMissing {
                iface: "vswnoexist0".into()
            })
        );
        let lo = PortProfile::AfPacket {
            iface: "lo".into(),
            qpairs: 1,
        };
        assert_eq!(lo.check_in(&dir), Ok(()));
        let long = PortProfile::AfPacket {
            iface: "a-name-longer-than-15".into(),
            qpairs: 1,
        };
        assert!(matches!(
            long.check_in(&dir),
            Err(ProfileError::IfaceName { .. })
        ));
    }

    #[test]
    fn missing_pcap_file_is_named() {
        let dir = plugin_dir_with("pcap", &["librte_net_pcap.so"]);
        let e = pcap(Some("/nonexistent/capture.pcap"), true).check_in(&dir);
        assert_eq!(
            e,
            Err(ProfileError::PcapMissing {
                path: "/nonexistent/capture.pcap".into()
            })
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/capture.pcap"));
        assert_eq!(
            pcap(None, false).check_in(&dir),
            Err(ProfileError::PcapNoRx)
        );
        assert_eq!(
            PortProfile::Pcap {
                rx_pcap: None,
                tx_pcap: None,
                rx_iface: Some("lo".into()),
                tx_iface: None,
                infinite_rx: true
            }
            .check_in(&dir),
            Err(ProfileError::PcapInfiniteNeedsFile)
        );
        assert!(matches!(
            pcap(Some("/tmp/a,b.pcap"), false).check_in(&dir),
            Err(ProfileError::DevargSyntax { .. })
        ));
    }

    #[test]
    fn missing_pmd_names_the_debian_package() {
        let empty = plugin_dir_with("empty", &[]);
        let e = pcap(Some("/x"), false).check_in(&empty).unwrap_err();
        assert_eq!(
            e,
            ProfileError::MissingPmd {
                driver: "net_pcap".into(),
                package: "librte-net-pcap23".into(),
                path: empty.join("librte_net_pcap.so.23").display().to_string(),
            }
        );
        assert!(e
            .to_string()
            .contains("install the Debian package librte-net-pcap23"));
        let cases = [
            (
                PortProfile::AfPacket {
                    iface: "lo".into(),
                    qpairs: 1,
                },
                "librte-net-af-packet23",
            ),
            (
                PortProfile::Tap {
                    iface: "t0".into(),
                    mac: None,
                },
                "librte-net-tap23",
            ),
            (
                PortProfile::Null {
                    no_rx: true,
                    size: None,
                },
                "librte-net-null23",
            ),
            (
                PortProfile::VhostUser {
                    path: "/tmp/s".into(),
                    client: false,
                    queues: 1,
                },
                "librte-net-vhost23",
            ),
            (
                PortProfile::VirtioUser {
                    path: "/tmp/s".into(),
                    server: true,
                    queues: 1,
                    mac: None,
                },
                "librte-net-virtio23",
            ),
            (
                PortProfile::Mlx5 {
                    pci: "0000:03:00.0".into(),
                    representors: None,
                },
                "librte-net-mlx5-23",
            ),
        ];
        for (p, package) in cases {
            match p.check_in(&empty) {
                Err(ProfileError::MissingPmd { package: got, .. }) => assert_eq!(got, package),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        // The ring PMD is always there (linked or shipped with EAL).
        assert_eq!(PortProfile::Ring {}.check_in(&empty), Ok(()));
        // The probe path maps a device name back to its driver.
        assert!(matches!(
            missing_pmd_for_name("net_null12", &empty),
            Some(ProfileError::MissingPmd { .. })
        ));
        assert_eq!(missing_pmd_for_name("net_ring0", &empty), None);
    }

    #[test]
    fn plugin_dir_is_the_eal_one_and_found_pmds_pass() {
        let dir = plugin_dir();
        assert!(dir.is_absolute(), "{}", dir.display());
        let present = plugin_dir_with("present", &["librte_net_null.so"]);
        assert_eq!(
            PortProfile::Null {
                no_rx: false,
                size: None
            }
            .check_in(&present),
            Ok(())
        );
    }

    #[test]
    fn mlx5_without_hardware_says_so() {
        let dir = plugin_dir_with("mlx5", &["librte_net_mlx5.so.23"]);
        let e = PortProfile::Mlx5 {
            pci: "0000:ff:1f.7".into(),
            representors: Some("[65535]".into()),
        }
        .check_in(&dir)
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "mlx5 needs hardware: PCI device 0000:ff:1f.7 not found (no /sys/bus/pci/devices/0000:ff:1f.7)"
        );
    }

    #[test]
    fn mlx5_port_names_one_representor() {
        let dir = plugin_dir_with("mlx5r", &["librte_net_mlx5.so.23"]);
        let check = |r: &str| {
            PortProfile::Mlx5 {
                pci: "0000:ff:1f.7".into(),
                representors: Some(r.into()),
            }
            .check_in(&dir)
        };
        for good in [
            "vf3",
            "pf0vf3",
            "c1pf0vf3",
            "sf2",
            "pf1sf7",
            "pf1",
            "3",
            "[65535]",
            "pf0vf65535",
        ] {
            // One representor: the check goes on to the host (no such device here).
            assert!(
                matches!(check(good), Err(ProfileError::PciDeviceMissing { .. })),
                "{good}: {:?}",
                check(good)
            );
        }
        for bad in [
            "[0-3]",
            "vf[0-3]",
            "0-3",
            "",
            "vf",
            "pf",
            "c0",
            "vf65536",
            "vf3x",
            "vfpf3",
            "[3",
            "pf0vf3sf1",
            "vf000001",
        ] {
            let e = check(bad).unwrap_err();
            assert!(
                matches!(e, ProfileError::Representor { .. }),
                "{bad:?}: {e:?}"
            );
            assert!(e.to_string().contains("must name one representor"), "{e}");
        }
        // A list cannot even be written into device arguments.
        assert!(matches!(
            check("pf0vf[0,1]"),
            Err(ProfileError::DevargSyntax { .. })
        ));
        assert_eq!(
            representor_of("0000:03:00.0,representor=pf0vf3,dv_flow_en=1"),
            Some("pf0vf3")
        );
        assert_eq!(representor_of("0000:03:00.0"), None);
    }

    #[test]
    fn sockets_need_their_directory() {
        let dir = plugin_dir_with("sock", &["librte_net_vhost.so", "librte_net_virtio.so"]);
        let vhost = PortProfile::VhostUser {
            path: "/nonexistent-dir/pod.sock".into(),
            client: false,
            queues: 1,
        };
        assert!(matches!(
            vhost.check_in(&dir),
            Err(ProfileError::DirMissing { .. })
        ));
        let client = PortProfile::VirtioUser {
            path: "/nonexistent-dir/pod.sock".into(),
            server: false,
            queues: 1,
            mac: None,
        };
        assert!(matches!(
            client.check_in(&dir),
            Err(ProfileError::SocketMissing { .. })
        ));
        let zero = PortProfile::VhostUser {
            path: "/tmp/pod.sock".into(),
            client: false,
            queues: 0,
        };
        assert!(matches!(
            zero.check_in(&dir),
            Err(ProfileError::ZeroQueues { .. })
        ));
    }
}
