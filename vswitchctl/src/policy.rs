//! `vswitchctl policy`: NetworkPolicies, cluster policies (admin and baseline
//! tiers) and the named ports of endpoints, as the desired state holds them.
//!
//! `policy add` reads a fragment with the configuration file's keys: TOML
//! `[[policy]]`, `[[cluster_policy]]` and `[[policy_endpoint]]` tables, or the
//! same as a JSON object of lists. Each item becomes one op of one write, so
//! a fragment is applied whole or not at all; with `--replace`, an item that
//! exists is deleted and added again in that same write.
//!
//! `policy show` adds the rules' hit counters (as TOML comments, or a
//! `hits` list in JSON); `policy log` prints the denied connections the
//! daemon kept (a table, or JSON lines).

use std::io::{Read, Write};

use control::api::{self, op::Op as O};
use serde::{Deserialize, Serialize};

use crate::cli::{PolicyCmd, PolicyKindArgs};
use crate::client::Client;
use crate::commands::get_state;
use crate::error::{Error, Result};
use crate::table::Table;

/// A fragment of the configuration file's policy sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fragment {
    /// `[[policy]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<api::NetworkPolicy>,
    /// `[[cluster_policy]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_policy: Vec<api::ClusterPolicy>,
    /// `[[policy_endpoint]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_endpoint: Vec<api::PolicyEndpoint>,
}

impl Fragment {
    /// Parses a fragment: JSON when it starts with `{`, TOML otherwise.
    ///
    /// # Errors
    /// Text that is neither, an unknown key, a value of the wrong type.
    pub fn parse(text: &str) -> std::result::Result<Fragment, String> {
        let f: Fragment = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| {
                // toml's messages span lines (an excerpt); one line is enough.
                e.to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.starts_with('^'))
                    .collect::<Vec<_>>()
                    .join(" ")
            })?
        };
        if f.policy.is_empty() && f.cluster_policy.is_empty() && f.policy_endpoint.is_empty() {
            return Err(
                "no [[policy]], [[cluster_policy]] or [[policy_endpoint]] item in it".into(),
            );
        }
        Ok(f)
    }

    /// The ops that add every item; with `existing` (the state), each item
    /// that exists is deleted first, in the same write.
    pub fn ops(self, existing: Option<&crate::doc::Document>) -> Vec<O> {
        let mut ops = Vec::new();
        for p in self.policy {
            if existing.is_some_and(|s| s.policies.iter().any(|x| x.name == p.name)) {
                ops.push(O::DelPolicy(p.name.clone()));
            }
            ops.push(O::AddPolicy(p));
        }
        for p in self.cluster_policy {
            if existing.is_some_and(|s| s.cluster_policies.iter().any(|x| x.name == p.name)) {
                ops.push(O::DelClusterPolicy(p.name.clone()));
            }
            ops.push(O::AddClusterPolicy(p));
        }
        for e in self.policy_endpoint {
            if existing.is_some_and(|s| s.policy_endpoints.iter().any(|x| x.name == e.name)) {
                ops.push(O::DelPolicyEndpoint(e.name.clone()));
            }
            ops.push(O::AddPolicyEndpoint(e));
        }
        ops
    }
}

/// Reads `policy add`'s fragment (`-`: standard input).
///
/// # Errors
/// A file that cannot be read or parsed.
pub fn read_fragment(file: &str) -> Result<Fragment> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::Usage(format!("stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| Error::Usage(format!("{file}: {e}")))?
    };
    Fragment::parse(&text).map_err(|e| Error::Usage(format!("{file}: {e}")))
}

/// The op `policy del` sends.
pub fn del_op(name: &str, kind: &PolicyKindArgs) -> O {
    if kind.cluster {
        O::DelClusterPolicy(name.to_owned())
    } else if kind.endpoint {
        O::DelPolicyEndpoint(name.to_owned())
    } else {
        O::DelPolicy(name.to_owned())
    }
}

fn print_json(out: &mut dyn Write, v: &impl Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn rules(n: usize) -> String {
    n.to_string()
}

/// `policy list`: every item of the three kinds.
pub async fn list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(
            out,
            &serde_json::json!({
                "policies": s.policies,
                "cluster_policies": s.cluster_policies,
                "policy_endpoints": s.policy_endpoints,
            }),
        );
    }
    let mut t = Table::new(&[
        "KIND", "NAME", "TIER", "PRIORITY", "SUBJECT", "INGRESS", "EGRESS",
    ]);
    for c in &s.cluster_policies {
        t.row([
            "cluster".into(),
            c.name.clone(),
            c.tier.clone(),
            c.priority.to_string(),
            c.subject.len().to_string(),
            rules(c.ingress.len()),
            rules(c.egress.len()),
        ]);
    }
    for p in &s.policies {
        let isolates = |d: &str| p.policy_types.iter().any(|t| t == d);
        let dir = |d: &str, n: usize| {
            if isolates(d) {
                rules(n)
            } else {
                "-".into()
            }
        };
        t.row([
            "network".into(),
            p.name.clone(),
            "-".into(),
            "-".into(),
            p.subject.len().to_string(),
            dir("Ingress", p.ingress.len()),
            dir("Egress", p.egress.len()),
        ]);
    }
    for e in &s.policy_endpoints {
        let ports: Vec<String> = e
            .named_ports
            .iter()
            .map(|p| format!("{}={}/{}", p.name, p.port, p.protocol))
            .collect();
        t.row([
            "endpoint".into(),
            e.name.clone(),
            "-".into(),
            "-".into(),
            e.addresses.join(","),
            ports.join(","),
            "-".into(),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `policy show NAME`: the item as the desired state holds it, as a fragment
/// `policy add` takes back (TOML), or JSON.
pub async fn show(
    client: &mut Client,
    name: &str,
    kind: &PolicyKindArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let (_, s) = get_state(client).await?;
    let mut f = Fragment::default();
    let what = if kind.cluster {
        f.cluster_policy
            .extend(s.cluster_policies.into_iter().filter(|p| p.name == name));
        "cluster policy"
    } else if kind.endpoint {
        f.policy_endpoint
            .extend(s.policy_endpoints.into_iter().filter(|p| p.name == name));
        "policy endpoint"
    } else {
        f.policy
            .extend(s.policies.into_iter().filter(|p| p.name == name));
        "policy"
    };
    if f == Fragment::default() {
        return Err(Error::Refused(tonic::Status::not_found(format!(
            "no {what} named {}",
            control::names::quote(name)
        ))));
    }
    // Hits by rule; a daemon without the policy stage has none to show.
    let hits = if kind.endpoint {
        Vec::new()
    } else {
        client
            .policy_hits(api::PolicyHitsRequest {
                policy: name.to_owned(),
            })
            .await
            .map(|r| r.into_inner().rules)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| (h.tier == "network") != kind.cluster)
            .collect()
    };
    if json {
        let mut v = match (
            f.policy.pop(),
            f.cluster_policy.pop(),
            f.policy_endpoint.pop(),
        ) {
            (Some(p), _, _) => serde_json::to_value(&p)?,
            (_, Some(p), _) => serde_json::to_value(&p)?,
            (_, _, Some(e)) => serde_json::to_value(&e)?,
            _ => unreachable!("one item was found"),
        };
        if !kind.endpoint {
            if let Some(m) = v.as_object_mut() {
                let list = hits.iter().map(hit_json).collect();
                m.insert("hits".into(), serde_json::Value::Array(list));
            }
        }
        return print_json(out, &v);
    }
    let text = toml::to_string(&f).map_err(|e| Error::Usage(format!("printing: {e}")))?;
    write!(out, "{text}")?;
    if !kind.endpoint {
        // Comments: the text stays a fragment `policy add --replace` takes.
        writeln!(
            out,
            "# hits (connections decided, since the daemon started):"
        )?;
        if hits.is_empty() {
            writeln!(out, "#   none")?;
        }
        for h in &hits {
            writeln!(
                out,
                "#   {} rule {}{}: {}",
                h.direction,
                rule_text(h.rule),
                name_text(&h.rule_name),
                h.hits
            )?;
        }
    }
    Ok(())
}

fn rule_text(r: Option<u32>) -> String {
    r.map_or_else(|| "-".into(), |r| r.to_string())
}

fn name_text(n: &str) -> String {
    if n.is_empty() {
        String::new()
    } else {
        format!(" ({n:?})")
    }
}

fn hit_json(h: &api::PolicyRuleHits) -> serde_json::Value {
    serde_json::json!({
        "tier": h.tier, "direction": h.direction, "rule": h.rule,
        "rule_name": h.rule_name, "hits": h.hits,
    })
}

/// `policy log`: the denied connections kept, a table or JSON lines.
pub async fn log(
    client: &mut Client,
    limit: Option<u32>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let reply = client
        .policy_log(api::PolicyLogRequest {
            limit: limit.unwrap_or(0),
        })
        .await
        .map_err(Error::Refused)?
        .into_inner();
    if json {
        for e in &reply.events {
            let v = serde_json::json!({
                "unix_ms": e.unix_ms, "network": e.network, "direction": e.direction,
                "tier": e.tier, "policy": e.policy, "rule": e.rule, "rule_name": e.rule_name,
                "protocol": e.protocol, "src": e.src, "sport": e.sport,
                "dst": e.dst, "dport": e.dport, "frontend": e.frontend,
            });
            serde_json::to_writer(&mut *out, &v)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let mut t = Table::new(&[
        "TIME_MS",
        "NETWORK",
        "DIRECTION",
        "TIER",
        "POLICY",
        "RULE",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "FRONTEND",
    ]);
    for e in &reply.events {
        let policy = if e.policy.is_empty() {
            "(isolated, no rule allows)".to_string()
        } else {
            e.policy.clone()
        };
        t.row([
            e.unix_ms.to_string(),
            e.network.clone(),
            e.direction.clone(),
            e.tier.clone(),
            policy,
            format!("{}{}", rule_text(e.rule), name_text(&e.rule_name)),
            e.protocol.clone(),
            format!("{}:{}", e.src, e.sport),
            format!("{}:{}", e.dst, e.dport),
            if e.frontend.is_empty() {
                "-".into()
            } else {
                e.frontend.clone()
            },
        ]);
    }
    write!(out, "{}", t.render())?;
    writeln!(
        out,
        "{} logged since start, {} suppressed (rate limit)",
        reply.logged, reply.suppressed
    )?;
    Ok(())
}

/// Runs a `policy` read; `None` for the writes.
pub async fn read(client: &mut Client, cmd: &PolicyCmd, out: &mut dyn Write) -> Option<Result<()>> {
    Some(match cmd {
        PolicyCmd::List(j) => list(client, j.json, out).await,
        PolicyCmd::Show { name, kind, json } => show(client, name, kind, json.json, out).await,
        PolicyCmd::Log { limit, json } => log(client, *limit, json.json, out).await,
        PolicyCmd::Add { .. } | PolicyCmd::Del { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_reads_as_toml_or_json_and_replaces_what_exists() {
        let toml = r#"
[[policy]]
name = "x/web"
subject = ["10.1.0.2"]
[[policy.ingress]]
ports = [{ port = 80 }]
[[cluster_policy]]
name = "c"
tier = "Admin"
priority = 1
subject = []
"#;
        let f = Fragment::parse(toml).unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(Fragment::parse(&json).unwrap(), f);
        let ops = f.clone().ops(None);
        assert!(matches!(
            &ops[..],
            [O::AddPolicy(_), O::AddClusterPolicy(_)]
        ));
        let existing = crate::doc::Document {
            policies: f.policy.clone(),
            ..Default::default()
        };
        let ops = f.ops(Some(&existing));
        assert!(matches!(
            &ops[..],
            [O::DelPolicy(n), O::AddPolicy(_), O::AddClusterPolicy(_)] if n == "x/web"
        ));
    }

    #[test]
    fn a_bad_fragment_is_refused_before_anything_is_sent() {
        for (text, words) in [
            ("", "no [[policy]]"),
            ("[[policy]]\nname = \"a\"\nsubject = []\nbogus = 1", "bogus"),
            ("[[polcy]]\nname = \"a\"", "polcy"),
            (
                "[[policy]]\nname = \"a\"\nsubject = []\n[[policy.ingress]]\nports = [{ port = 70000 }]",
                "port 70000 is out of range",
            ),
            (r#"{"policy": [{"name": "a", "subject": [], "egress": [{"ports": [{"end_port": -1}]}]}]}"#, "end_port -1"),
        ] {
            let e = Fragment::parse(text).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
        }
        // Deep nesting is an error, not a crash.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Fragment::parse(&format!("x = {deep}")).is_err());
        assert!(Fragment::parse(&format!("{{\"policy\": {deep}}}")).is_err());
    }
}
