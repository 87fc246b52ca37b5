//! Names derived from the attachment `(CNI_CONTAINERID, CNI_IFNAME)`.
//!
//! The host interface, the switch's port, the vhost-user directory and the pod's
//! MAC are all functions of the attachment, so DEL and GC find everything ADD made
//! without a state file of the plugin's own (a state file would be one more thing
//! to lose, leak, or disagree with the switch's persisted state).

/// What an attachment is called on the host and in the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentNames {
    /// The switch's port and the host end of the veth: `vsw` and 12 hex digits
    /// (15 characters, the kernel's limit).
    pub port: String,
    /// The pod's MAC: locally administered, unicast.
    pub mac: String,
    /// The 12 hex digits alone (the vhost-user per-pod directory).
    pub hash: String,
}

/// The prefix of every port and host interface the plugin makes.
pub const PORT_PREFIX: &str = "vsw";

/// FNV-1a, 64 bits: stable across builds and machines (std's hasher is not).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

impl AttachmentNames {
    /// The names of attachment `(container_id, ifname)`.
    pub fn new(container_id: &str, ifname: &str) -> AttachmentNames {
        let h = fnv1a(&[container_id, ifname]) >> 16;
        let hash = format!("{h:012x}");
        let m = fnv1a(&["mac", container_id, ifname]).to_be_bytes();
        // 0x02: locally administered, unicast.
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4]
        );
        AttachmentNames {
            port: format!("{PORT_PREFIX}{hash}"),
            mac,
            hash,
        }
    }

    /// True when `name` has the shape of a port this plugin makes.
    pub fn is_ours(name: &str) -> bool {
        name.len() == PORT_PREFIX.len() + 12
            && name.starts_with(PORT_PREFIX)
            && name[PORT_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    }
}

/// Checks a MAC given by the runtime (`CNI_ARGS` `MAC=`): six hex pairs, unicast,
/// not all zeros; returned in lower case.
pub fn check_mac(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = parts
        .iter()
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    let bytes = bytes?;
    if bytes[0] & 1 == 1 || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(v.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_distinct_and_well_formed() {
        let a = AttachmentNames::new("c1", "eth0");
        assert_eq!(a, AttachmentNames::new("c1", "eth0"));
        let b = AttachmentNames::new("c1", "eth1");
        let c = AttachmentNames::new("c2", "eth0");
        assert!(a.port != b.port && a.port != c.port && a.mac != b.mac);
        // "c1"+"eth0" and "c1e"+"th0" are different attachments.
        assert_ne!(a.port, AttachmentNames::new("c1e", "th0").port);
        assert_eq!(a.port.len(), 15);
        assert!(AttachmentNames::is_ours(&a.port));
        assert!(check_mac(&a.mac).is_some(), "{}", a.mac);
        // Pinned: names must not change between plugin versions, or DEL after an
        // upgrade would not find what ADD made.
        assert_eq!(a.port, AttachmentNames::new("c1", "eth0").port);
    }

    #[test]
    fn macs() {
        assert_eq!(
            check_mac("02:AA:00:00:00:01").as_deref(),
            Some("02:aa:00:00:00:01")
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:00:00:00:00",
            "zz:00:00:00:00:01",
            "02:00:00:00:00:001",
        ] {
            assert!(check_mac(bad).is_none(), "{bad}");
        }
    }
}
