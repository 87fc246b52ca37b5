//! `[conntrack]`: each worker's connection table, its size and its timeouts
//! per state.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use dataplane::pipeline::conntrack::{table::MAX_CAPACITY, table::MAX_TIMEOUT, CtConfig};
use dataplane::pipeline::conntrack::{CtTimeouts, DEFAULT_CT_CAPACITY};

/// `[conntrack]`. Timeouts are in seconds; the defaults are Linux's
/// `nf_conntrack` defaults. Numbers are read wide so that a negative or huge
/// value is refused naming its key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// Connections per worker (160 bytes each), allocated when the first
    /// tracked network appears.
    pub capacity: i64,
    /// TCP after the first SYN (and in a simultaneous open).
    pub tcp_syn_sent: i64,
    /// TCP after the SYN-ACK.
    pub tcp_syn_recv: i64,
    /// TCP after the handshake.
    pub tcp_established: i64,
    /// TCP after the first FIN.
    pub tcp_fin_wait: i64,
    /// TCP after the first FIN was acknowledged.
    pub tcp_close_wait: i64,
    /// TCP after both FINs, the last unacknowledged.
    pub tcp_last_ack: i64,
    /// TCP after both FINs were acknowledged.
    pub tcp_time_wait: i64,
    /// TCP after a reset.
    pub tcp_close: i64,
    /// UDP before a reply.
    pub udp_unreplied: i64,
    /// UDP after a reply.
    pub udp_replied: i64,
    /// ICMP echo.
    pub icmp: i64,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        let t = CtTimeouts::default();
        ConntrackConfig {
            capacity: i64::from(DEFAULT_CT_CAPACITY),
            tcp_syn_sent: t.tcp[0].into(),
            tcp_syn_recv: t.tcp[2].into(),
            tcp_established: t.tcp[3].into(),
            tcp_fin_wait: t.tcp[4].into(),
            tcp_close_wait: t.tcp[5].into(),
            tcp_last_ack: t.tcp[6].into(),
            tcp_time_wait: t.tcp[7].into(),
            tcp_close: t.tcp[8].into(),
            udp_unreplied: t.udp_unreplied.into(),
            udp_replied: t.udp_replied.into(),
            icmp: t.icmp.into(),
        }
    }
}

impl ConntrackConfig {
    fn timeouts(&self) -> [(&'static str, i64); 11] {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait", self.tcp_fin_wait),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("udp_unreplied", self.udp_unreplied),
            ("udp_replied", self.udp_replied),
            ("icmp", self.icmp),
        ]
    }

    /// Checks every key's range.
    ///
    /// # Errors
    /// The first key out of range, named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=i64::from(MAX_CAPACITY)).contains(&self.capacity) {
            return Err(ConfigError::OutOfRange {
                field: "conntrack.capacity".into(),
                reason: format!(
                    "{} is not a connection count from 1 to {MAX_CAPACITY}",
                    self.capacity
                ),
            });
        }
        for (key, v) in self.timeouts() {
            if !(1..=i64::from(MAX_TIMEOUT)).contains(&v) {
                return Err(ConfigError::OutOfRange {
                    field: format!("conntrack.{key}"),
                    reason: format!("{v} is not a timeout from 1 to {MAX_TIMEOUT} seconds"),
                });
            }
        }
        Ok(())
    }

    /// The dataplane's settings (after [`validate`](Self::validate)).
    pub fn to_dataplane(&self) -> CtConfig {
        let s = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        CtConfig {
            capacity: s(self.capacity),
            timeouts: CtTimeouts {
                tcp: [
                    s(self.tcp_syn_sent),
                    s(self.tcp_syn_sent),
                    s(self.tcp_syn_recv),
                    s(self.tcp_established),
                    s(self.tcp_fin_wait),
                    s(self.tcp_close_wait),
                    s(self.tcp_last_ack),
                    s(self.tcp_time_wait),
                    s(self.tcp_close),
                ],
                udp_unreplied: s(self.udp_unreplied),
                udp_replied: s(self.udp_replied),
                icmp: s(self.icmp),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::VswitchConfig;

    #[test]
    fn defaults_are_linux_and_keys_are_checked() {
        let c = VswitchConfig::parse("", 4).unwrap();
        let d = c.conntrack.to_dataplane();
        assert_eq!(d.capacity, 262_144);
        assert_eq!(d.timeouts.tcp[3], 432_000);
        assert_eq!(d.timeouts.tcp[7], 120);
        let c =
            VswitchConfig::parse("[conntrack]\ncapacity = 1000\ntcp_time_wait = 5\n", 4).unwrap();
        assert_eq!(c.conntrack.to_dataplane().capacity, 1000);
        assert_eq!(c.conntrack.to_dataplane().timeouts.tcp[7], 5);
        for (text, want) in [
            (
                "capacity = 0",
                "conntrack.capacity: 0 is not a connection count",
            ),
            ("capacity = -5", "conntrack.capacity: -5 is not"),
            (
                "tcp_established = 0",
                "conntrack.tcp_established: 0 is not a timeout",
            ),
            (
                "icmp = 99999999",
                "conntrack.icmp: 99999999 is not a timeout",
            ),
            ("udp = 5", "unknown field `udp`"),
        ] {
            let e = VswitchConfig::parse(&format!("[conntrack]\n{text}\n"), 4)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_tracked_network_is_taken_with_any_number_of_workers() {
        let net = "[[network]]\nname = \"blue\"\nvni = 100\ngateway_mac = \"02:00:00:00:aa:01\"\nconntrack = true\n";
        let one = format!("[dataplane]\nworkers = [1]\n{net}");
        let c = VswitchConfig::parse(&one, 4).unwrap();
        assert!(c.networks[0].conntrack && c.networks[0].conntrack_window_tracking);
        // Two workers hand each other their connections' packets.
        let two = format!("[dataplane]\nworkers = [1, 2]\n{net}");
        let c = VswitchConfig::parse(&two, 4).unwrap();
        assert!(c.networks[0].conntrack && c.dataplane.workers.len() == 2);
        let off = format!("{net}conntrack_window_tracking = false\n");
        let c = VswitchConfig::parse(&off, 4).unwrap();
        assert!(!c.networks[0].conntrack_window_tracking);
    }

    #[test]
    fn a_tracked_network_is_its_tenants_only_one() {
        let net = |name: &str, vni: u32, tenant: &str| {
            format!("[[network]]\nname = \"{name}\"\nvni = {vni}\ntenant = \"{tenant}\"\ngateway_mac = \"02:00:00:00:aa:01\"\n")
        };
        let blue = format!("{}conntrack = true\n", net("blue", 100, "t1"));
        let apart = format!("{blue}{}", net("green", 200, "t2"));
        VswitchConfig::parse(&apart, 4).unwrap();
        let together = format!("{blue}{}", net("green", 200, "t1"));
        let e = VswitchConfig::parse(&together, 4).unwrap_err().to_string();
        assert!(
            e.contains("network \"blue\": conntrack") && e.contains("\"green\""),
            "{e}"
        );
    }

    /// A network with a service is tracked without asking: the same rules.
    #[test]
    fn a_network_with_a_service_is_tracked_and_bound_alike() {
        let net = |name: &str, vni: u32, tenant: &str| {
            format!("[[network]]\nname = \"{name}\"\nvni = {vni}\ntenant = \"{tenant}\"\nsubnets = [\"10.{vni}.0.0/16\"]\ngateway_mac = \"02:00:00:00:aa:01\"\n")
        };
        let svc = "[[service]]\nname = \"web\"\nnetwork = \"blue\"\ncluster_ip = \"10.100.9.9\"\nports = [{ port = 80 }]\nbackends = [{ address = \"10.100.0.5\" }]\n";
        let blue = net("blue", 100, "t1");
        let c = VswitchConfig::parse(&format!("{blue}{svc}"), 4).unwrap();
        assert!(!c.networks[0].conntrack && c.services.len() == 1);
        let two = format!("[dataplane]\nworkers = [1, 2]\n{blue}{svc}");
        let c = VswitchConfig::parse(&two, 4).unwrap();
        assert_eq!(c.services.len(), 1);
        let together = format!("{blue}{}{svc}", net("green", 200, "t1"));
        let e = VswitchConfig::parse(&together, 4).unwrap_err().to_string();
        assert!(
            e.contains("service \"web\"") && e.contains("\"green\""),
            "{e}"
        );
    }
}
