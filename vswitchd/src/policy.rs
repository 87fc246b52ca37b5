//! `PolicyHits` and `PolicyLog` of the API: what the policy stage's
//! observer holds (`dataplane::pipeline::policy::observe`), in the proto's
//! words. Both are read without asking the workers: the hit counters are
//! atomics each worker stores, the log a ring the workers append to with
//! `try_lock`.

use std::net::IpAddr;

use control::api;
use dataplane::pipeline::policy::{DenyEvent, Direction, PolicyObserver, Tier};

fn tier(t: Tier) -> String {
    t.to_string()
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn protocol(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn endpoint(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Hits per rule, only `policy`'s when it is not empty.
pub fn hits(obs: &PolicyObserver, policy: &str) -> api::PolicyHitsReply {
    let rules = obs
        .rule_hits()
        .into_iter()
        .filter(|h| policy.is_empty() || h.key.policy == policy)
        .map(|h| api::PolicyRuleHits {
            tier: tier(h.key.tier),
            policy: h.key.policy,
            direction: if h.key.direction == 0 {
                "ingress"
            } else {
                "egress"
            }
            .into(),
            rule: h.key.rule,
            rule_name: h.key.rule_name,
            hits: h.hits,
        })
        .collect();
    api::PolicyHitsReply { rules }
}

/// The newest `limit` denied connections (0: all kept), oldest first;
/// `network` names a VNI's network.
pub fn log(
    obs: &PolicyObserver,
    limit: u32,
    network: impl Fn(u32) -> String,
) -> api::PolicyLogReply {
    let (events, logged, suppressed) = obs.denied();
    let skip = match limit {
        0 => 0,
        n => events.len().saturating_sub(n as usize),
    };
    api::PolicyLogReply {
        events: events
            .iter()
            .skip(skip)
            .map(|e| event(e, &network))
            .collect(),
        logged,
        suppressed,
    }
}

fn event(e: &DenyEvent, network: &impl Fn(u32) -> String) -> api::PolicyDenied {
    let (t, by) = e.decided_by();
    let (policy, rule, rule_name) = match by {
        Some((p, r, n)) => (p.to_owned(), r, n.to_owned()),
        None => (String::new(), None, String::new()),
    };
    api::PolicyDenied {
        unix_ms: e.unix_ms,
        network: network(e.vni),
        direction: direction(e.direction).into(),
        tier: tier(t),
        policy,
        rule,
        rule_name,
        protocol: protocol(e.conn.protocol),
        src: e.conn.src.to_string(),
        sport: u32::from(e.sport),
        dst: e.conn.dst.to_string(),
        dport: u32::from(e.conn.l4),
        frontend: e.frontend.map(|(a, p)| endpoint(a, p)).unwrap_or_default(),
    }
}
