//! The policy model: what a controller hands the switch, already resolved to
//! addresses, and its validation.
//!
//! Selectors are not the switch's job: whatever drives it (a Kubernetes
//! controller watching pods, namespaces and policies) resolves every selector
//! to IP sets before it writes. What is left are three tiers, evaluated in
//! order for each direction of a new connection:
//!
//! 1. **admin** — ClusterNetworkPolicy `tier: Admin` (network-policy-api
//!    v1alpha2, which replaced AdminNetworkPolicy): policies ordered by
//!    `priority` (lower first; equal priorities by name, which upstream leaves
//!    undefined), each with its rules in order. The first rule that matches
//!    decides: `Allow` and `Deny` are final, `Pass` skips the rest of the admin
//!    tier and hands the connection to the NetworkPolicy tier.
//! 2. **network** — Kubernetes NetworkPolicy: an endpoint selected by any
//!    policy whose `policyTypes` name a direction is *isolated* for that
//!    direction, and then only what some rule of those policies allows passes
//!    (rules combine by union; a policy with no rules allows nothing). An
//!    isolated endpoint's connection that no rule allows is denied here and
//!    never reaches the baseline tier.
//! 3. **baseline** — ClusterNetworkPolicy `tier: Baseline`: as admin, with
//!    `Allow` and `Deny` only; applies to endpoints the NetworkPolicy tier left
//!    unisolated for that direction.
//! 4. Default: allow.
//!
//! Ingress rules apply at the destination endpoint (their peers are sources),
//! egress rules at the source endpoint (their peers are destinations); a
//! connection between two local endpoints is checked in both places and
//! passes only if both allow.
//!
//! Peers are IP sets (`addresses`) and CIDR blocks with `except`; an empty
//! peer list matches every peer. Ports are a protocol (TCP, UDP, SCTP, ICMP,
//! ICMPv6) with a single port, a range (`port`…`endPort`), a named port, or an
//! ICMP type (and code); an empty port list matches every protocol and port.
//! A **named port resolves on the connection's destination endpoint** — the
//! subject for ingress, the peer for egress — through [`PolicySet::endpoints`];
//! a name the destination does not have (or a destination the switch does not
//! know) matches nothing, and is not an error.
//!
//! [`PolicySet::validate`] turns the model into a [`ValidPolicySet`] or refuses
//! it whole with a [`PolicyError`] naming the field (`admin[2].ingress[0].peers[1].ipBlock.except[0]`).
//! Every list is bounded ([`Limits`]): an API caller is not root. CIDRs with
//! host bits set are taken as their network (`10.1.2.3/16` is `10.1.0.0/16`),
//! as Kubernetes does.
//!
//! The types are plain Rust with serde, in camelCase as the upstream objects
//! are spelled; the API's protobuf form is to be built from them.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Everything the policy stage enforces, as one desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySet {
    /// ClusterNetworkPolicies of `tier: Admin`.
    #[serde(default)]
    pub admin: Vec<ClusterPolicy>,
    /// NetworkPolicies.
    #[serde(default)]
    pub network: Vec<NetworkPolicy>,
    /// ClusterNetworkPolicies of `tier: Baseline` (actions `Allow` and `Deny`).
    #[serde(default)]
    pub baseline: Vec<ClusterPolicy>,
    /// The named ports of the endpoints the switch knows (local and remote):
    /// where named ports resolve.
    #[serde(default)]
    pub endpoints: Vec<EndpointPorts>,
}

/// A ClusterNetworkPolicy of the admin or the baseline tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPolicy {
    /// Unique within its tier.
    pub name: String,
    /// Lower is evaluated first.
    pub priority: u32,
    /// The endpoints it applies to, by address.
    pub subject: Vec<String>,
    /// Rules for connections towards the subject, in order.
    #[serde(default)]
    pub ingress: Vec<ClusterRule>,
    /// Rules for connections from the subject, in order.
    #[serde(default)]
    pub egress: Vec<ClusterRule>,
}

/// One rule of a ClusterNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRule {
    /// Optional, for trace and logs.
    #[serde(default)]
    pub name: String,
    /// What a match decides.
    pub action: ClusterAction,
    /// The other end of the connection; empty matches every peer.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Empty matches every protocol and port.
    #[serde(default)]
    pub ports: Vec<PortMatch>,
}

/// The action of a ClusterNetworkPolicy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClusterAction {
    /// Allowed; no later tier is consulted.
    Allow,
    /// Denied; no later tier is consulted.
    Deny,
    /// (Admin tier only.) Leave the decision to the NetworkPolicy tier.
    Pass,
}

/// A Kubernetes NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Unique within the tier (a controller uses `namespace/name`).
    pub name: String,
    /// The endpoints it selects, by address.
    pub subject: Vec<String>,
    /// The directions it isolates its subject for; rules of a direction not
    /// named here are refused.
    pub policy_types: Vec<Direction>,
    /// What may connect to the subject.
    #[serde(default)]
    pub ingress: Vec<NetworkRule>,
    /// What the subject may connect to.
    #[serde(default)]
    pub egress: Vec<NetworkRule>,
}

/// One rule of a NetworkPolicy: an allow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkRule {
    /// The other end of the connection; empty matches every peer.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Empty matches every protocol and port.
    #[serde(default)]
    pub ports: Vec<PortMatch>,
}

/// The direction of a rule, seen from its subject endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Connections towards the subject, checked at the destination.
    Ingress,
    /// Connections from the subject, checked at the source.
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// 0 for ingress, 1 for egress.
    pub fn index(self) -> usize {
        self as usize
    }

    fn field(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Peer {
    /// An IP set: the addresses of the endpoints a selector chose.
    Addresses(Vec<String>),
    /// A CIDR block minus the blocks in `except`, each inside it.
    IpBlock {
        /// `10.0.0.0/8`, `fd00::/64`.
        cidr: String,
        /// Blocks carved out of `cidr`.
        #[serde(default)]
        except: Vec<String>,
    },
}

/// A protocol and, for TCP, UDP and SCTP, a port or range; for ICMP, a type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMatch {
    /// Defaults to TCP, as in Kubernetes.
    #[serde(default)]
    pub protocol: Protocol,
    /// None: every port of the protocol.
    #[serde(default)]
    pub port: Option<PortRef>,
    /// With a numeric `port`: the range `port..=endPort`.
    #[serde(default)]
    pub end_port: Option<u16>,
    /// ICMP and ICMPv6 only: the message type; None matches every type.
    #[serde(default)]
    pub icmp_type: Option<u8>,
    /// With `icmpType`: the code; None matches every code.
    #[serde(default)]
    pub icmp_code: Option<u8>,
}

/// A port by number or by the name an endpoint gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// 1…65535.
    Number(u16),
    /// Resolved on the destination endpoint (see the module doc).
    Name(String),
}

/// The protocols a rule may name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// IP protocol 6.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// IP protocol 17.
    #[serde(rename = "UDP")]
    Udp,
    /// IP protocol 132.
    #[serde(rename = "SCTP")]
    Sctp,
    /// IP protocol 1.
    #[serde(rename = "ICMP")]
    Icmp,
    /// IP protocol 58.
    #[serde(rename = "ICMPv6")]
    Icmpv6,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
        }
    }

    /// TCP, UDP and SCTP have ports; ICMP has types.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
    }
}

/// The named ports of one endpoint (a pod's container ports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPorts {
    /// The endpoint's addresses (one per family, usually).
    pub addresses: Vec<String>,
    /// Its named ports; names are unique per endpoint.
    #[serde(default)]
    pub named_ports: Vec<NamedPort>,
}

/// A named container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedPort {
    /// `http`, `metrics`.
    pub name: String,
    /// TCP, UDP or SCTP.
    #[serde(default)]
    pub protocol: Protocol,
    /// 1…65535.
    pub port: u16,
}

/// Bounds on every list of the model. The defaults hold a large cluster's
/// policy (100k rules, 100k endpoints) and keep a hostile write from making
/// the switch allocate without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Policies per tier.
    pub policies_per_tier: usize,
    /// Rules per policy and direction.
    pub rules_per_direction: usize,
    /// Peers per rule.
    pub peers_per_rule: usize,
    /// Addresses per IP set (a subject or an `addresses` peer).
    pub addresses_per_set: usize,
    /// `except` blocks per CIDR block.
    pub excepts_per_block: usize,
    /// Port entries per rule.
    pub ports_per_rule: usize,
    /// Endpoints with named ports.
    pub endpoints: usize,
    /// Named ports per endpoint.
    pub named_ports_per_endpoint: usize,
    /// Rules over all tiers and directions.
    pub total_rules: usize,
    /// Addresses, blocks and excepts over the whole set.
    pub total_addresses: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            policies_per_tier: 100_000,
            rules_per_direction: 1_000,
            peers_per_rule: 1_000,
            addresses_per_set: 65_536,
            excepts_per_block: 1_000,
            ports_per_rule: 100,
            endpoints: 200_000,
            named_ports_per_endpoint: 64,
            total_rules: 200_000,
            total_addresses: 4_000_000,
        }
    }
}

/// Longest policy, rule or port name (a DNS subdomain).
pub const MAX_NAME: usize = 253;

/// A model the validation refused: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct PolicyError {
    /// The path of the field, `admin[2].ingress[0].peers[1].ipBlock.cidr`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field. Bad input is quoted by a short prefix only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// A list longer than its bound.
    #[error("{len} entries, more than the limit of {limit}")]
    TooMany {
        /// The list's length.
        len: usize,
        /// Its bound.
        limit: usize,
    },
    /// The whole set is larger than a total bound.
    #[error("{what}: {count} in all, more than the limit of {limit}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// How many.
        count: usize,
        /// The bound.
        limit: usize,
    },
    /// A name that is empty, too long or has characters outside `[A-Za-z0-9._/-]`.
    #[error("{0:?} is not a name (1 to 253 of A-Z a-z 0-9 . _ / -)")]
    BadName(String),
    /// A port name that is not an IANA service name, as Kubernetes requires.
    #[error("{0:?} is not a port name (1 to 15 of a-z 0-9 -, with a letter, no leading, trailing or double -)")]
    BadPortName(String),
    /// A policy name used twice in its tier.
    #[error("{0:?} is used by another policy of this tier")]
    DuplicateName(String),
    /// A named port used twice by one endpoint.
    #[error("{0:?} is used twice by this endpoint")]
    DuplicatePortName(String),
    /// An address listed by two endpoints.
    #[error("{0} belongs to another endpoint too")]
    DuplicateEndpoint(IpAddr),
    /// Not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    /// Not a CIDR block.
    #[error("{0:?} is not a CIDR block (address/prefix)")]
    BadCidr(String),
    /// An `except` of the other family than its block.
    #[error("{except} is not of the family of {cidr}")]
    ExceptFamily {
        /// The block.
        cidr: IpNet,
        /// The except.
        except: IpNet,
    },
    /// An `except` not inside its block.
    #[error("{except} is outside {cidr}")]
    ExceptOutside {
        /// The block.
        cidr: IpNet,
        /// The except.
        except: IpNet,
    },
    /// `Pass` in the baseline tier.
    #[error("Pass is an admin-tier action; the baseline tier has Allow and Deny")]
    PassInBaseline,
    /// Port 0.
    #[error("port 0 is not a port")]
    PortZero,
    /// `endPort` below `port`.
    #[error("endPort {end} is below port {port}")]
    EndPortBelowPort {
        /// The port.
        port: u16,
        /// The end port.
        end: u16,
    },
    /// `endPort` without a numeric `port`.
    #[error("endPort needs a numeric port")]
    EndPortWithoutPort,
    /// A port or `endPort` on ICMP, or an ICMP type on TCP/UDP/SCTP.
    #[error("{field} does not apply to {protocol:?}")]
    NotForProtocol {
        /// `port`, `endPort`, `icmpType` or `icmpCode`.
        field: &'static str,
        /// The protocol of the entry.
        protocol: Protocol,
    },
    /// `icmpCode` without `icmpType`.
    #[error("icmpCode needs icmpType")]
    CodeWithoutType,
    /// `policyTypes` empty or with a direction twice.
    #[error("policyTypes must name Ingress, Egress or both, once each")]
    BadPolicyTypes,
    /// Rules for a direction the policy does not isolate.
    #[error("rules for a direction not in policyTypes")]
    DirectionNotInTypes,
}

/// An IP set or block list compiled to intervals: sorted, disjoint, not
/// adjacent, inclusive `[lo, hi]`; IPv4 in `u32`'s range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddrIntervals {
    /// IPv4 intervals.
    pub v4: Vec<(u128, u128)>,
    /// IPv6 intervals.
    pub v6: Vec<(u128, u128)>,
}

impl AddrIntervals {
    /// Every address of both families.
    pub fn any() -> Self {
        AddrIntervals {
            v4: vec![(0, u32::MAX as u128)],
            v6: vec![(0, u128::MAX)],
        }
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (list, key) = match addr {
            IpAddr::V4(a) => (&self.v4, a.to_bits() as u128),
            IpAddr::V6(a) => (&self.v6, a.to_bits()),
        };
        let i = list.partition_point(|&(lo, _)| lo <= key);
        i > 0 && list[i - 1].1 >= key
    }

    fn normalize(list: &mut Vec<(u128, u128)>) {
        list.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(list.len());
        for &(lo, hi) in list.iter() {
            match out.last_mut() {
                Some(last) if last.1 == u128::MAX || lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        *list = out;
    }
}

/// The transport part a validated rule matches. ICMP's key is
/// `type << 8 | code`, so a type alone is the range of its 256 codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// Protocol `proto` with its key in `lo..=hi`.
    Range {
        /// IP protocol number.
        proto: u8,
        /// First key.
        lo: u16,
        /// Last key.
        hi: u16,
    },
    /// A named port of protocol `proto`, resolved on the destination endpoint.
    Named {
        /// IP protocol number.
        proto: u8,
        /// The name.
        name: String,
    },
}

/// A validated rule of any tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRule {
    /// `Allow` for NetworkPolicy rules.
    pub action: ClusterAction,
    /// The rule's name (empty if none).
    pub name: String,
    /// None: every peer.
    pub peers: Option<AddrIntervals>,
    /// None: every protocol and port. Some(empty) cannot happen.
    pub ports: Option<Vec<PortSpec>>,
}

/// A validated policy of any tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPolicy {
    /// Its name.
    pub name: String,
    /// Its priority (0 for NetworkPolicies).
    pub priority: u32,
    /// Subject addresses, sorted and deduplicated.
    pub subject: Vec<IpAddr>,
    /// Whether it isolates its subject, per direction (NetworkPolicies only).
    pub isolates: [bool; 2],
    /// Its rules, per direction.
    pub rules: [Vec<ValidRule>; 2],
}

/// The tiers, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    /// ClusterNetworkPolicy `tier: Admin`.
    Admin,
    /// NetworkPolicy.
    Network,
    /// ClusterNetworkPolicy `tier: Baseline`.
    Baseline,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Admin => "admin",
            Tier::Network => "network",
            Tier::Baseline => "baseline",
        })
    }
}

/// A [`PolicySet`] that passed validation, parsed into what the compiler reads.
/// Policies keep the index they had in their tier's list.
#[derive(Debug, Clone, Default)]
pub struct ValidPolicySet {
    /// Per tier (indexed by `Tier as usize`), in the order of the model.
    pub tiers: [Vec<ValidPolicy>; 3],
    /// Named ports per endpoint address: `(name, protocol) → port`.
    pub named_ports: hashbrown::HashMap<IpAddr, Vec<(String, u8, u16)>>,
}

impl PolicySet {
    /// Validates the whole set with the default [`Limits`].
    ///
    /// # Errors
    /// The first field found wrong, by its path.
    pub fn validate(&self) -> Result<ValidPolicySet, PolicyError> {
        self.validate_with(&Limits::default())
    }

    /// Validates the whole set against `limits`.
    ///
    /// # Errors
    /// The first field found wrong, by its path.
    pub fn validate_with(&self, limits: &Limits) -> Result<ValidPolicySet, PolicyError> {
        let mut v = Validator {
            limits,
            rules: 0,
            addresses: 0,
            path: String::new(),
        };
        let mut out = ValidPolicySet::default();
        for (tier, field, list) in [
            (Tier::Admin, "admin", &self.admin),
            (Tier::Baseline, "baseline", &self.baseline),
        ] {
            let at = v.enter(format_args!("{field}"));
            v.bound("", list.len(), limits.policies_per_tier)?;
            let mut names = HashSet::new();
            for (i, p) in list.iter().enumerate() {
                let at = v.enter(format_args!("[{i}]"));
                out.tiers[tier as usize].push(v.cluster(tier, p, &mut names)?);
                v.leave(at);
            }
            v.leave(at);
        }
        let at = v.enter(format_args!("network"));
        v.bound("", self.network.len(), limits.policies_per_tier)?;
        let mut names = HashSet::new();
        for (i, p) in self.network.iter().enumerate() {
            let at = v.enter(format_args!("[{i}]"));
            out.tiers[Tier::Network as usize].push(v.network(p, &mut names)?);
            v.leave(at);
        }
        v.leave(at);
        let at = v.enter(format_args!("endpoints"));
        v.bound("", self.endpoints.len(), limits.endpoints)?;
        for (i, ep) in self.endpoints.iter().enumerate() {
            let at = v.enter(format_args!("[{i}]"));
            v.endpoint(ep, &mut out.named_ports)?;
            v.leave(at);
        }
        v.leave(at);
        Ok(out)
    }
}

/// Walks the model. `path` is the field being looked at, grown and cut as
/// the walk goes, so a valid set costs no formatting; only an error copies it.
struct Validator<'a> {
    limits: &'a Limits,
    rules: usize,
    addresses: usize,
    path: String,
}

/// At most 40 characters of untrusted input, for messages.
fn quote(s: &str) -> String {
    s.chars().take(40).collect()
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

/// An IANA service name (RFC 6335), which is what Kubernetes takes for a
/// container port's name: so a string like `"80"` is refused, not taken for a
/// name that would never resolve.
fn is_port_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

impl Validator<'_> {
    fn enter(&mut self, seg: fmt::Arguments<'_>) -> usize {
        let len = self.path.len();
        // Writing into a String cannot fail.
        let _ = fmt::Write::write_fmt(&mut self.path, seg);
        len
    }

    fn leave(&mut self, len: usize) {
        self.path.truncate(len);
    }

    /// An error at the current path plus `suffix` (`.name`, `[3]`, or "").
    fn err(&self, suffix: fmt::Arguments<'_>, problem: Problem) -> PolicyError {
        PolicyError {
            field: format!("{}{}", self.path, suffix),
            problem,
        }
    }

    fn name(&self, suffix: &str, name: &str, optional: bool) -> Result<(), PolicyError> {
        if (optional && name.is_empty()) || is_name(name) {
            return Ok(());
        }
        Err(self.err(format_args!("{suffix}"), Problem::BadName(quote(name))))
    }

    fn port_name(&self, suffix: &str, name: &str) -> Result<(), PolicyError> {
        if is_port_name(name) {
            return Ok(());
        }
        Err(self.err(format_args!("{suffix}"), Problem::BadPortName(quote(name))))
    }

    fn bound(&self, suffix: &str, len: usize, limit: usize) -> Result<(), PolicyError> {
        if len > limit {
            return Err(self.err(format_args!("{suffix}"), Problem::TooMany { len, limit }));
        }
        Ok(())
    }

    fn count_addresses(&mut self, n: usize) -> Result<(), PolicyError> {
        self.addresses += n;
        if self.addresses > self.limits.total_addresses {
            return Err(self.err(
                format_args!(""),
                Problem::TooLarge {
                    what: "addresses",
                    count: self.addresses,
                    limit: self.limits.total_addresses,
                },
            ));
        }
        Ok(())
    }

    fn count_rules(&mut self, n: usize) -> Result<(), PolicyError> {
        self.rules += n;
        if self.rules > self.limits.total_rules {
            return Err(self.err(
                format_args!(""),
                Problem::TooLarge {
                    what: "rules",
                    count: self.rules,
                    limit: self.limits.total_rules,
                },
            ));
        }
        Ok(())
    }

    /// An IP set at the current path.
    fn addresses(&mut self, list: &[String]) -> Result<Vec<IpAddr>, PolicyError> {
        self.bound("", list.len(), self.limits.addresses_per_set)?;
        self.count_addresses(list.len())?;
        list.iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<IpAddr>()
                    .map_err(|_| self.err(format_args!("[{i}]"), Problem::BadAddress(quote(s))))
            })
            .collect()
    }

    fn subject(&mut self, list: &[String]) -> Result<Vec<IpAddr>, PolicyError> {
        let at = self.enter(format_args!(".subject"));
        let mut subject = self.addresses(list)?;
        self.leave(at);
        subject.sort_unstable();
        subject.dedup();
        Ok(subject)
    }

    fn policy_name(&self, name: &str, names: &mut HashSet<String>) -> Result<(), PolicyError> {
        self.name(".name", name, false)?;
        if !names.insert(name.to_owned()) {
            return Err(self.err(format_args!(".name"), Problem::DuplicateName(quote(name))));
        }
        Ok(())
    }

    fn cluster(
        &mut self,
        tier: Tier,
        p: &ClusterPolicy,
        names: &mut HashSet<String>,
    ) -> Result<ValidPolicy, PolicyError> {
        self.policy_name(&p.name, names)?;
        let subject = self.subject(&p.subject)?;
        let mut rules: [Vec<ValidRule>; 2] = Default::default();
        for (dir, list) in [
            (Direction::Ingress, &p.ingress),
            (Direction::Egress, &p.egress),
        ] {
            let at = self.enter(format_args!(".{}", dir.field()));
            self.bound("", list.len(), self.limits.rules_per_direction)?;
            self.count_rules(list.len())?;
            for (j, r) in list.iter().enumerate() {
                let rat = self.enter(format_args!("[{j}]"));
                self.name(".name", &r.name, true)?;
                if tier == Tier::Baseline && r.action == ClusterAction::Pass {
                    return Err(self.err(format_args!(".action"), Problem::PassInBaseline));
                }
                let rule = ValidRule {
                    action: r.action,
                    name: r.name.clone(),
                    peers: self.peers(&r.peers)?,
                    ports: self.ports(&r.ports)?,
                };
                rules[dir.index()].push(rule);
                self.leave(rat);
            }
            self.leave(at);
        }
        Ok(ValidPolicy {
            name: p.name.clone(),
            priority: p.priority,
            subject,
            isolates: [false; 2],
            rules,
        })
    }

    fn network(
        &mut self,
        p: &NetworkPolicy,
        names: &mut HashSet<String>,
    ) -> Result<ValidPolicy, PolicyError> {
        self.policy_name(&p.name, names)?;
        let subject = self.subject(&p.subject)?;
        let mut isolates = [false; 2];
        for d in &p.policy_types {
            if std::mem::replace(&mut isolates[d.index()], true) {
                return Err(self.err(format_args!(".policyTypes"), Problem::BadPolicyTypes));
            }
        }
        if p.policy_types.is_empty() {
            return Err(self.err(format_args!(".policyTypes"), Problem::BadPolicyTypes));
        }
        let mut rules: [Vec<ValidRule>; 2] = Default::default();
        for (dir, list) in [
            (Direction::Ingress, &p.ingress),
            (Direction::Egress, &p.egress),
        ] {
            let at = self.enter(format_args!(".{}", dir.field()));
            if !list.is_empty() && !isolates[dir.index()] {
                return Err(self.err(format_args!(""), Problem::DirectionNotInTypes));
            }
            self.bound("", list.len(), self.limits.rules_per_direction)?;
            self.count_rules(list.len())?;
            for (j, r) in list.iter().enumerate() {
                let rat = self.enter(format_args!("[{j}]"));
                let rule = ValidRule {
                    action: ClusterAction::Allow,
                    name: String::new(),
                    peers: self.peers(&r.peers)?,
                    ports: self.ports(&r.ports)?,
                };
                rules[dir.index()].push(rule);
                self.leave(rat);
            }
            self.leave(at);
        }
        Ok(ValidPolicy {
            name: p.name.clone(),
            priority: 0,
            subject,
            isolates,
            rules,
        })
    }

    fn peers(&mut self, peers: &[Peer]) -> Result<Option<AddrIntervals>, PolicyError> {
        let at = self.enter(format_args!(".peers"));
        self.bound("", peers.len(), self.limits.peers_per_rule)?;
        if peers.is_empty() {
            self.leave(at);
            return Ok(None);
        }
        let mut set = AddrIntervals::default();
        for (k, peer) in peers.iter().enumerate() {
            let pat = self.enter(format_args!("[{k}]"));
            match peer {
                Peer::Addresses(list) => {
                    let a = self.enter(format_args!(".addresses"));
                    for addr in self.addresses(list)? {
                        match addr {
                            IpAddr::V4(a) => set.v4.push((a.to_bits().into(), a.to_bits().into())),
                            IpAddr::V6(a) => set.v6.push((a.to_bits(), a.to_bits())),
                        }
                    }
                    self.leave(a);
                }
                Peer::IpBlock { cidr, except } => {
                    let b = self.enter(format_args!(".ipBlock"));
                    let block = parse_cidr(cidr).ok_or_else(|| {
                        self.err(format_args!(".cidr"), Problem::BadCidr(quote(cidr)))
                    })?;
                    self.bound(".except", except.len(), self.limits.excepts_per_block)?;
                    self.count_addresses(1 + except.len())?;
                    let mut holes = Vec::with_capacity(except.len());
                    for (e, s) in except.iter().enumerate() {
                        let at = |v: &Self, p| v.err(format_args!(".except[{e}]"), p);
                        let x =
                            parse_cidr(s).ok_or_else(|| at(self, Problem::BadCidr(quote(s))))?;
                        let same_family = matches!(
                            (block, x),
                            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
                        );
                        if !same_family {
                            return Err(at(
                                self,
                                Problem::ExceptFamily {
                                    cidr: block,
                                    except: x,
                                },
                            ));
                        }
                        if !block.contains(&x) {
                            return Err(at(
                                self,
                                Problem::ExceptOutside {
                                    cidr: block,
                                    except: x,
                                },
                            ));
                        }
                        holes.push(net_range(x));
                    }
                    let list = match block {
                        IpNet::V4(_) => &mut set.v4,
                        IpNet::V6(_) => &mut set.v6,
                    };
                    subtract(list, net_range(block), holes);
                    self.leave(b);
                }
            }
            self.leave(pat);
        }
        self.leave(at);
        AddrIntervals::normalize(&mut set.v4);
        AddrIntervals::normalize(&mut set.v6);
        Ok(Some(set))
    }

    fn ports(&mut self, ports: &[PortMatch]) -> Result<Option<Vec<PortSpec>>, PolicyError> {
        self.bound(".ports", ports.len(), self.limits.ports_per_rule)?;
        if ports.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(ports.len());
        for (k, p) in ports.iter().enumerate() {
            let at = self.enter(format_args!(".ports[{k}]"));
            out.push(self.port(p)?);
            self.leave(at);
        }
        Ok(Some(out))
    }

    fn port(&self, p: &PortMatch) -> Result<PortSpec, PolicyError> {
        let proto = p.protocol.number();
        let not_for = |f: &'static str| {
            self.err(
                format_args!(".{f}"),
                Problem::NotForProtocol {
                    field: f,
                    protocol: p.protocol,
                },
            )
        };
        if !p.protocol.has_ports() {
            if p.port.is_some() {
                return Err(not_for("port"));
            }
            if p.end_port.is_some() {
                return Err(not_for("endPort"));
            }
            let (lo, hi) = match (p.icmp_type, p.icmp_code) {
                (None, None) => (0, u16::MAX),
                (None, Some(_)) => {
                    return Err(self.err(format_args!(".icmpCode"), Problem::CodeWithoutType))
                }
                (Some(t), None) => (u16::from(t) << 8, u16::from(t) << 8 | 0xff),
                (Some(t), Some(c)) => {
                    let k = u16::from(t) << 8 | u16::from(c);
                    (k, k)
                }
            };
            return Ok(PortSpec::Range { proto, lo, hi });
        }
        if p.icmp_type.is_some() {
            return Err(not_for("icmpType"));
        }
        if p.icmp_code.is_some() {
            return Err(not_for("icmpCode"));
        }
        Ok(match (&p.port, p.end_port) {
            (None, None) => PortSpec::Range {
                proto,
                lo: 0,
                hi: u16::MAX,
            },
            (None, Some(_)) | (Some(PortRef::Name(_)), Some(_)) => {
                return Err(self.err(format_args!(".endPort"), Problem::EndPortWithoutPort))
            }
            (Some(PortRef::Number(0)), _) => {
                return Err(self.err(format_args!(".port"), Problem::PortZero))
            }
            (Some(PortRef::Number(port)), end) => {
                let end = end.unwrap_or(*port);
                if end < *port {
                    return Err(self.err(
                        format_args!(".endPort"),
                        Problem::EndPortBelowPort { port: *port, end },
                    ));
                }
                PortSpec::Range {
                    proto,
                    lo: *port,
                    hi: end,
                }
            }
            (Some(PortRef::Name(name)), None) => {
                self.port_name(".port", name)?;
                PortSpec::Named {
                    proto,
                    name: name.clone(),
                }
            }
        })
    }

    fn endpoint(
        &mut self,
        ep: &EndpointPorts,
        map: &mut hashbrown::HashMap<IpAddr, Vec<(String, u8, u16)>>,
    ) -> Result<(), PolicyError> {
        let at = self.enter(format_args!(".addresses"));
        let addrs = self.addresses(&ep.addresses)?;
        self.leave(at);
        self.bound(
            ".namedPorts",
            ep.named_ports.len(),
            self.limits.named_ports_per_endpoint,
        )?;
        let mut ports = Vec::with_capacity(ep.named_ports.len());
        for (k, np) in ep.named_ports.iter().enumerate() {
            let at = self.enter(format_args!(".namedPorts[{k}]"));
            self.port_name(".name", &np.name)?;
            if !np.protocol.has_ports() {
                return Err(self.err(
                    format_args!(".protocol"),
                    Problem::NotForProtocol {
                        field: "port",
                        protocol: np.protocol,
                    },
                ));
            }
            if np.port == 0 {
                return Err(self.err(format_args!(".port"), Problem::PortZero));
            }
            if ports
                .iter()
                .any(|(n, _, _): &(String, u8, u16)| *n == np.name)
            {
                return Err(self.err(
                    format_args!(".name"),
                    Problem::DuplicatePortName(quote(&np.name)),
                ));
            }
            ports.push((np.name.clone(), np.protocol.number(), np.port));
            self.leave(at);
        }
        for (k, a) in addrs.into_iter().enumerate() {
            if map.insert(a, ports.clone()).is_some() {
                return Err(self.err(
                    format_args!(".addresses[{k}]"),
                    Problem::DuplicateEndpoint(a),
                ));
            }
        }
        Ok(())
    }
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().map(|n| n.trunc())
}

/// The inclusive range of a block, IPv4 in `u32`'s range.
fn net_range(n: IpNet) -> (u128, u128) {
    match n {
        IpNet::V4(n) => (n.network().to_bits().into(), n.broadcast().to_bits().into()),
        IpNet::V6(n) => (n.network().to_bits(), n.broadcast().to_bits()),
    }
}

/// Pushes `block` minus the union of `holes` onto `out`.
fn subtract(out: &mut Vec<(u128, u128)>, block: (u128, u128), mut holes: Vec<(u128, u128)>) {
    holes.sort_unstable();
    let mut next = Some(block.0);
    for (lo, hi) in holes {
        let Some(start) = next else { break };
        if hi < start {
            continue;
        }
        if lo > start {
            out.push((start, lo - 1));
        }
        next = hi.checked_add(1).filter(|&n| n <= block.1);
    }
    if let Some(start) = next {
        if start <= block.1 {
            out.push((start, block.1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, except: &[&str]) -> Peer {
        Peer::IpBlock {
            cidr: cidr.into(),
            except: except.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn np_with(rule: NetworkRule) -> PolicySet {
        PolicySet {
            network: vec![NetworkPolicy {
                name: "ns/p".into(),
                subject: vec!["10.0.0.1".into()],
                policy_types: vec![Direction::Ingress],
                ingress: vec![rule],
                egress: vec![],
            }],
            ..Default::default()
        }
    }

    fn problem_of(set: &PolicySet) -> (String, Problem) {
        let e = set.validate().unwrap_err();
        (e.field, e.problem)
    }

    #[test]
    fn a_cidr_that_does_not_parse_names_its_field() {
        let set = np_with(NetworkRule {
            peers: vec![block("10.0.0.0/8", &[]), block("10.0.0/33", &[])],
            ports: vec![],
        });
        let (field, p) = problem_of(&set);
        assert_eq!(field, "network[0].ingress[0].peers[1].ipBlock.cidr");
        assert_eq!(p, Problem::BadCidr("10.0.0/33".into()));
        let e = set.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("network[0].ingress[0].peers[1].ipBlock.cidr: "),
            "{e}"
        );
    }

    #[test]
    fn an_except_outside_its_block_or_of_another_family_is_refused() {
        let set = np_with(NetworkRule {
            peers: vec![block("10.0.0.0/16", &["10.0.1.0/24", "10.1.0.0/24"])],
            ports: vec![],
        });
        let (field, p) = problem_of(&set);
        assert_eq!(field, "network[0].ingress[0].peers[0].ipBlock.except[1]");
        assert!(matches!(p, Problem::ExceptOutside { .. }), "{p:?}");
        let set = np_with(NetworkRule {
            peers: vec![block("10.0.0.0/16", &["fd00::/64"])],
            ports: vec![],
        });
        assert!(matches!(problem_of(&set).1, Problem::ExceptFamily { .. }));
        // A block wider than its cidr is outside it too.
        let set = np_with(NetworkRule {
            peers: vec![block("10.0.0.0/16", &["10.0.0.0/8"])],
            ports: vec![],
        });
        assert!(matches!(problem_of(&set).1, Problem::ExceptOutside { .. }));
    }

    #[test]
    fn end_port_below_port_and_other_port_mistakes_are_refused() {
        let pm = |port: Option<PortRef>, end: Option<u16>| NetworkRule {
            peers: vec![],
            ports: vec![PortMatch {
                protocol: Protocol::Tcp,
                port,
                end_port: end,
                ..Default::default()
            }],
        };
        let (field, p) = problem_of(&np_with(pm(Some(PortRef::Number(90)), Some(80))));
        assert_eq!(field, "network[0].ingress[0].ports[0].endPort");
        assert_eq!(p, Problem::EndPortBelowPort { port: 90, end: 80 });
        let (_, p) = problem_of(&np_with(pm(None, Some(80))));
        assert_eq!(p, Problem::EndPortWithoutPort);
        let (_, p) = problem_of(&np_with(pm(Some(PortRef::Name("http".into())), Some(80))));
        assert_eq!(p, Problem::EndPortWithoutPort);
        let (field, p) = problem_of(&np_with(pm(Some(PortRef::Number(0)), None)));
        assert_eq!(
            (field.as_str(), p),
            ("network[0].ingress[0].ports[0].port", Problem::PortZero)
        );
        let icmp_port = NetworkRule {
            peers: vec![],
            ports: vec![PortMatch {
                protocol: Protocol::Icmp,
                port: Some(PortRef::Number(8)),
                ..Default::default()
            }],
        };
        assert!(matches!(
            problem_of(&np_with(icmp_port)).1,
            Problem::NotForProtocol { field: "port", .. }
        ));
        let code_alone = NetworkRule {
            peers: vec![],
            ports: vec![PortMatch {
                protocol: Protocol::Icmpv6,
                icmp_code: Some(0),
                ..Default::default()
            }],
        };
        assert_eq!(problem_of(&np_with(code_alone)).1, Problem::CodeWithoutType);
    }

    #[test]
    fn a_port_name_must_be_a_service_name() {
        for bad in [
            "80",
            "HTTP",
            "-http",
            "http-",
            "h--p",
            "a-very-long-port-name",
            "",
        ] {
            let set = np_with(NetworkRule {
                peers: vec![],
                ports: vec![PortMatch {
                    port: Some(PortRef::Name(bad.into())),
                    ..Default::default()
                }],
            });
            let (field, p) = problem_of(&set);
            assert_eq!(field, "network[0].ingress[0].ports[0].port", "{bad:?}");
            assert_eq!(p, Problem::BadPortName(bad.into()));
        }
        let set = PolicySet {
            endpoints: vec![EndpointPorts {
                addresses: vec!["10.0.0.1".into()],
                named_ports: vec![NamedPort {
                    name: "8080".into(),
                    protocol: Protocol::Tcp,
                    port: 8080,
                }],
            }],
            ..Default::default()
        };
        assert_eq!(problem_of(&set).0, "endpoints[0].namedPorts[0].name");
        // A JSON string port is a name, and "80" is not one.
        let set: PolicySet = serde_json::from_str(
            r#"{"network": [{"name": "a", "subject": [], "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": "80"}]}]}]}"#,
        )
        .unwrap();
        assert!(matches!(problem_of(&set).1, Problem::BadPortName(_)));
    }

    #[test]
    fn an_unknown_named_port_is_valid() {
        let set = np_with(NetworkRule {
            peers: vec![],
            ports: vec![PortMatch {
                port: Some(PortRef::Name("nosuch".into())),
                ..Default::default()
            }],
        });
        assert!(set.validate().is_ok());
    }

    #[test]
    fn pass_in_baseline_and_bad_names_and_duplicates_are_refused() {
        let cp = |name: &str, action| ClusterPolicy {
            name: name.into(),
            priority: 1,
            subject: vec!["10.0.0.1".into()],
            ingress: vec![ClusterRule {
                name: String::new(),
                action,
                peers: vec![],
                ports: vec![],
            }],
            egress: vec![],
        };
        let set = PolicySet {
            baseline: vec![cp("b", ClusterAction::Pass)],
            ..Default::default()
        };
        assert_eq!(
            problem_of(&set),
            (
                "baseline[0].ingress[0].action".into(),
                Problem::PassInBaseline
            )
        );
        let set = PolicySet {
            admin: vec![cp("a", ClusterAction::Pass), cp("a", ClusterAction::Deny)],
            ..Default::default()
        };
        assert_eq!(problem_of(&set).0, "admin[1].name");
        let set = PolicySet {
            admin: vec![cp("a b", ClusterAction::Deny)],
            ..Default::default()
        };
        assert_eq!(problem_of(&set).0, "admin[0].name");
        let mut bad_subject = cp("a", ClusterAction::Deny);
        bad_subject.subject.push("10.0.0.256".into());
        let set = PolicySet {
            admin: vec![bad_subject],
            ..Default::default()
        };
        assert_eq!(
            problem_of(&set),
            (
                "admin[0].subject[1]".into(),
                Problem::BadAddress("10.0.0.256".into())
            )
        );
    }

    #[test]
    fn every_list_is_bounded() {
        let limits = Limits {
            peers_per_rule: 2,
            ..Limits::default()
        };
        let set = np_with(NetworkRule {
            peers: vec![block("10.0.0.0/8", &[]); 3],
            ports: vec![],
        });
        let e = set.validate_with(&limits).unwrap_err();
        assert_eq!(e.field, "network[0].ingress[0].peers");
        assert_eq!(e.problem, Problem::TooMany { len: 3, limit: 2 });
        let limits = Limits {
            total_rules: 1,
            ..Limits::default()
        };
        let mut set = np_with(NetworkRule::default());
        set.network[0].ingress.push(NetworkRule::default());
        let e = set.validate_with(&limits).unwrap_err();
        assert!(
            matches!(e.problem, Problem::TooLarge { what: "rules", .. }),
            "{e}"
        );
    }

    #[test]
    fn policy_types_must_cover_the_rules() {
        let mut set = np_with(NetworkRule::default());
        set.network[0].egress.push(NetworkRule::default());
        assert_eq!(
            problem_of(&set),
            ("network[0].egress".into(), Problem::DirectionNotInTypes)
        );
        set.network[0].policy_types = vec![];
        set.network[0].egress.clear();
        assert_eq!(problem_of(&set).1, Problem::BadPolicyTypes);
    }

    #[test]
    fn except_carves_intervals() {
        let set = np_with(NetworkRule {
            peers: vec![block(
                "10.0.0.0/16",
                &["10.0.1.0/24", "10.0.0.0/24", "10.0.255.0/24"],
            )],
            ports: vec![],
        });
        let v = set.validate().unwrap();
        let peers = v.tiers[1][0].rules[0][0].peers.clone().unwrap();
        assert_eq!(peers.v4, vec![(0x0a00_0200, 0x0a00_feff)]);
        assert!(peers.contains("10.0.2.0".parse().unwrap()));
        assert!(!peers.contains("10.0.1.9".parse().unwrap()));
        assert!(!peers.contains("10.0.255.255".parse().unwrap()));
        assert!(peers.v6.is_empty());
    }

    #[test]
    fn the_model_reads_from_json_in_camel_case() {
        let json = r#"{
            "network": [{"name": "x/deny", "subject": ["10.0.0.1"], "policyTypes": ["Ingress"],
                "ingress": [{"peers": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                                       {"addresses": ["10.2.0.1"]}],
                             "ports": [{"protocol": "UDP", "port": 53, "endPort": 54},
                                       {"port": "http"},
                                       {"protocol": "ICMPv6", "icmpType": 128}]}]}],
            "endpoints": [{"addresses": ["10.0.0.1"], "namedPorts": [{"name": "http", "port": 8080}]}]
        }"#;
        let set: PolicySet = serde_json::from_str(json).unwrap();
        assert_eq!(
            set.network[0].ingress[0].ports[1].port,
            Some(PortRef::Name("http".into()))
        );
        assert_eq!(set.network[0].ingress[0].ports[1].protocol, Protocol::Tcp);
        set.validate().unwrap();
        let back: PolicySet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<PolicySet>(r#"{"admn": []}"#).is_err());
    }
}
