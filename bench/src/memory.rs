//! Where DPDK's memory comes from in a measurement: 2 MiB hugepages, or ordinary
//! 4 KiB pages (`--no-huge`).
//!
//! It matters more than anything in the forwarders. With 4 KiB pages every mbuf a
//! burst touches (the replayed frame net_pcap copies from and the one it copies
//! into) sits on its own page, and the dTLB misses cost testpmd io a third of its
//! rate on this VM (41 Mpps without hugepages, 64 with). All three forwarders of a
//! comparison run with the same kind of memory, and every result says which.

use std::fmt;

use anyhow::bail;

/// What the user asked for (`--memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryChoice {
    /// Hugepages when enough are free and mounted, else 4 KiB pages.
    #[default]
    Auto,
    /// Hugepages, or an error saying how to reserve them.
    Hugepages,
    /// 4 KiB pages (`--no-huge`), whatever the machine has.
    NoHuge,
}

impl std::str::FromStr for MemoryChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(MemoryChoice::Auto),
            "hugepages" | "huge" => Ok(MemoryChoice::Hugepages),
            "no-huge" => Ok(MemoryChoice::NoHuge),
            other => Err(format!(
                "unknown memory kind {other:?}: expected auto, hugepages or no-huge"
            )),
        }
    }
}

/// The memory a measurement runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// 2 MiB hugepages (EAL `--in-memory`: nothing left in hugetlbfs afterwards).
    Hugepages,
    /// 4 KiB pages (EAL `--no-huge`).
    NoHuge,
}

impl Memory {
    /// True for hugepages.
    pub fn is_huge(self) -> bool {
        self == Memory::Hugepages
    }

    /// `hugepages` or `no-huge`, as results print it.
    pub fn label(self) -> &'static str {
        match self {
            Memory::Hugepages => "hugepages",
            Memory::NoHuge => "no-huge",
        }
    }

    /// Decides `choice` for runs that each need `needed_mb` MiB (they run one after
    /// another, so the largest single need counts), from this machine's
    /// `/proc/meminfo` and `/proc/mounts`.
    ///
    /// # Errors
    /// `--memory hugepages` when the machine does not have them free and mounted.
    pub fn resolve(choice: MemoryChoice, needed_mb: u64) -> anyhow::Result<Memory> {
        if choice == MemoryChoice::NoHuge {
            return Ok(Memory::NoHuge);
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let status = HugepageStatus::parse(&meminfo, &mounts);
        match (choice, status.fits(needed_mb)) {
            (_, Ok(())) => Ok(Memory::Hugepages),
            (MemoryChoice::Hugepages, Err(why)) => bail!(
                "--memory hugepages: {why}; reserve them with `make bench-hugepages` \
                 (or: echo {pages} > /proc/sys/vm/nr_hugepages; \
                 mount -t hugetlbfs nodev /dev/hugepages)",
                // 2 MiB pages: what x86 and Arm default to.
                pages = status.total_pages - status.free_pages + needed_mb.div_ceil(2)
            ),
            (_, Err(why)) => {
                eprintln!(
                    "vswitch-bench: running without hugepages ({why}); \
                     `make bench-hugepages` reserves them"
                );
                Ok(Memory::NoHuge)
            }
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The default-size hugepages of a machine, as `/proc/meminfo` and `/proc/mounts`
/// describe them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HugepageStatus {
    /// `HugePages_Total`.
    pub total_pages: u64,
    /// `HugePages_Free`.
    pub free_pages: u64,
    /// `Hugepagesize` in KiB.
    pub page_kb: u64,
    /// A hugetlbfs is mounted.
    pub mounted: bool,
}

impl HugepageStatus {
    /// Reads the status from the texts of `/proc/meminfo` and `/proc/mounts`;
    /// missing fields read as zero.
    pub fn parse(meminfo: &str, mounts: &str) -> Self {
        let field = |name: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        HugepageStatus {
            total_pages: field("HugePages_Total"),
            free_pages: field("HugePages_Free"),
            page_kb: field("Hugepagesize"),
            mounted: mounts
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")),
        }
    }

    /// Free hugepage memory in MiB.
    pub fn free_mb(&self) -> u64 {
        self.free_pages * self.page_kb / 1024
    }

    /// Whether `needed_mb` MiB of hugepages can be had; if not, why.
    pub fn fits(&self, needed_mb: u64) -> Result<(), String> {
        if !self.mounted {
            return Err("no hugetlbfs mounted".to_owned());
        }
        if self.free_mb() < needed_mb {
            return Err(format!(
                "{} MiB of hugepages free, {needed_mb} MiB needed",
                self.free_mb()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24576000 kB\n\
        HugePages_Total:    2048\nHugePages_Free:     1500\nHugePages_Rsvd:        0\n\
        Hugepagesize:       2048 kB\n";
    const MOUNTS: &str =
        "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";

    #[test]
    fn parses_meminfo_and_mounts() {
        let s = HugepageStatus::parse(MEMINFO, MOUNTS);
        assert_eq!(
            s,
            HugepageStatus {
                total_pages: 2048,
                free_pages: 1500,
                page_kb: 2048,
                mounted: true
            }
        );
        assert_eq!(s.free_mb(), 3000);
    }

    #[test]
    fn fits_needs_a_mount_and_enough_free_pages() {
        let s = HugepageStatus::parse(MEMINFO, MOUNTS);
        assert_eq!(s.fits(3000), Ok(()));
        assert!(s.fits(3001).unwrap_err().contains("3000 MiB"));
        let unmounted = HugepageStatus::parse(MEMINFO, "proc /proc proc rw 0 0\n");
        assert!(unmounted.fits(1).unwrap_err().contains("hugetlbfs"));
        let none = HugepageStatus::parse("MemTotal: 1 kB\n", MOUNTS);
        assert_eq!(
            none,
            HugepageStatus {
                mounted: true,
                ..Default::default()
            }
        );
        assert!(none.fits(1).is_err());
    }

    #[test]
    fn choices_parse_and_no_huge_never_looks() {
        assert_eq!("auto".parse(), Ok(MemoryChoice::Auto));
        assert_eq!("hugepages".parse(), Ok(MemoryChoice::Hugepages));
        assert_eq!("no-huge".parse(), Ok(MemoryChoice::NoHuge));
        assert!("big"
            .parse::<MemoryChoice>()
            .unwrap_err()
            .contains("no-huge"));
        assert_eq!(
            Memory::resolve(MemoryChoice::NoHuge, u64::MAX).unwrap(),
            Memory::NoHuge
        );
        // More than any machine has: auto falls back, an explicit ask fails clearly.
        assert_eq!(
            Memory::resolve(MemoryChoice::Auto, u64::MAX / 4).unwrap(),
            Memory::NoHuge
        );
        let err = Memory::resolve(MemoryChoice::Hugepages, u64::MAX / 4).unwrap_err();
        assert!(err.to_string().contains("make bench-hugepages"), "{err}");
    }
}
