//! Arbitrary bytes as a policy set, the way an API caller could write one:
//! strings for addresses and blocks (often not addresses at all), any ports,
//! ranges, ICMP fields, names and actions, in every tier. Validation must
//! refuse or accept without panicking, naming a field when it refuses; what
//! it accepts must compile within small limits or be refused whole, and the
//! classifier must answer every connection the rest of the bytes describe,
//! with a decision the compiled policy knows, the same way twice.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::pipeline::policy::model::{
    ClusterAction, ClusterPolicy, ClusterRule, EndpointPorts, Limits, NamedPort, NetworkPolicy,
    NetworkRule, Peer, PortMatch, PortRef, Protocol,
};
use dataplane::pipeline::policy::{
    CompileLimits, CompiledPolicy, Connection, Direction, PolicySet,
};
use libfuzzer_sys::fuzz_target;

/// Reads the input front to back; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn count(&mut self, max: u8) -> usize {
        usize::from(self.u8() % (max + 1))
    }
    /// Mostly an address or block in a small space (so rules overlap),
    /// sometimes raw bytes as text.
    fn text(&mut self, block: bool) -> String {
        match self.u8() % 8 {
            0 => {
                let n = self.count(12);
                let raw: Vec<u8> = (0..n).map(|_| self.u8()).collect();
                String::from_utf8_lossy(&raw).into_owned()
            }
            1 | 2 => {
                let a = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, self.u16());
                if block {
                    format!("{a}/{}", self.u8() % 130)
                } else {
                    a.to_string()
                }
            }
            _ => {
                let a = Ipv4Addr::new(10, 0, self.u8() % 4, self.u8());
                if block {
                    format!("{a}/{}", self.u8() % 34)
                } else {
                    a.to_string()
                }
            }
        }
    }
    fn texts(&mut self, max: u8, block: bool) -> Vec<String> {
        (0..self.count(max)).map(|_| self.text(block)).collect()
    }
    fn protocol(&mut self) -> Protocol {
        [
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Sctp,
            Protocol::Icmp,
            Protocol::Icmpv6,
        ][usize::from(self.u8() % 5)]
    }
    fn name(&mut self) -> String {
        ["http", "dns", "", "a b", "metrics"][usize::from(self.u8() % 5)].to_string()
    }
    fn peers(&mut self) -> Vec<Peer> {
        (0..self.count(3))
            .map(|_| {
                if self.u8() & 1 == 0 {
                    Peer::Addresses(self.texts(4, false))
                } else {
                    Peer::IpBlock {
                        cidr: self.text(true),
                        except: self.texts(3, true),
                    }
                }
            })
            .collect()
    }
    fn ports(&mut self) -> Vec<PortMatch> {
        (0..self.count(3))
            .map(|_| {
                let flags = self.u8();
                PortMatch {
                    protocol: self.protocol(),
                    port: match flags % 3 {
                        0 => None,
                        1 => Some(PortRef::Number(self.u16() % 100)),
                        _ => Some(PortRef::Name(self.name())),
                    },
                    end_port: (flags & 4 != 0).then(|| self.u16() % 100),
                    icmp_type: (flags & 8 != 0).then(|| self.u8()),
                    icmp_code: (flags & 16 != 0).then(|| self.u8()),
                }
            })
            .collect()
    }
    fn cluster(&mut self, i: usize) -> ClusterPolicy {
        let rules = |b: &mut Self| -> Vec<ClusterRule> {
            (0..b.count(3))
                .map(|_| ClusterRule {
                    name: b.name(),
                    action: [
                        ClusterAction::Allow,
                        ClusterAction::Deny,
                        ClusterAction::Pass,
                    ][usize::from(b.u8() % 3)],
                    peers: b.peers(),
                    ports: b.ports(),
                })
                .collect()
        };
        ClusterPolicy {
            name: format!("p{}", i + usize::from(self.u8() % 2)),
            priority: u32::from(self.u8() % 4),
            subject: self.texts(4, false),
            ingress: rules(self),
            egress: rules(self),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut set = PolicySet::default();
    for i in 0..b.count(3) {
        set.admin.push(b.cluster(i));
    }
    for i in 0..b.count(3) {
        let types = [
            vec![Direction::Ingress],
            vec![Direction::Egress],
            vec![],
            vec![Direction::Ingress, Direction::Egress],
        ][usize::from(b.u8() % 4)]
        .clone();
        let rules = |b: &mut Bytes<'_>| -> Vec<NetworkRule> {
            (0..b.count(2))
                .map(|_| NetworkRule {
                    peers: b.peers(),
                    ports: b.ports(),
                })
                .collect()
        };
        set.network.push(NetworkPolicy {
            name: format!("ns/{i}"),
            subject: b.texts(4, false),
            policy_types: types,
            ingress: rules(&mut b),
            egress: rules(&mut b),
        });
    }
    for i in 0..b.count(2) {
        set.baseline.push(b.cluster(i));
    }
    for _ in 0..b.count(4) {
        set.endpoints.push(EndpointPorts {
            addresses: b.texts(2, false),
            named_ports: (0..b.count(2))
                .map(|_| NamedPort {
                    name: b.name(),
                    protocol: b.protocol(),
                    port: b.u16() % 100,
                })
                .collect(),
        });
    }
    let limits = Limits {
        addresses_per_set: 8,
        total_rules: 64,
        ..Limits::default()
    };
    let valid = match set.validate_with(&limits) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.field.is_empty(), "an error without a field: {e}");
            return;
        }
    };
    let small = CompileLimits {
        max_bytes: 1 << 20,
        max_work: 1 << 20,
    };
    let Ok(compiled) = CompiledPolicy::compile_with(&valid, small) else {
        return;
    };
    while !b.0.is_empty() {
        let v6 = b.u8() & 1 != 0;
        let addr = |b: &mut Bytes<'_>| {
            if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, b.u16()))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, b.u8() % 4, b.u8()))
            }
        };
        let conn = Connection {
            src: addr(&mut b),
            dst: addr(&mut b),
            protocol: b.u8(),
            l4: b.u16(),
        };
        for dir in Direction::ALL {
            let id = compiled.classify(dir, &conn);
            assert!((id.0 as usize) < compiled.decision_count());
            assert_eq!(compiled.classify(dir, &conn), id);
        }
    }
});
