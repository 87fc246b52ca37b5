//! `ct list|flush|stats`: the workers' connection tracking.

use std::io::Write;

use serde_json::{json, Value};

use crate::cli;
use crate::client::Client;
use crate::commands::{print_json, refused};
use crate::error::Result;
use crate::table::Table;
use control::api;

/// `ct list|flush|stats`.
pub async fn ct(client: &mut Client, c: &cli::CtCmd, out: &mut dyn Write) -> Result<()> {
    use cli::CtCmd as C;
    let filter = |f: &cli::CtFilterArgs| api::ConntrackFilter {
        network: f.network.clone().unwrap_or_default(),
        address: f.address.clone().unwrap_or_default(),
        port: f.port.map(u32::from),
        state: f.state.clone().unwrap_or_default(),
    };
    let (op, f, limit, json) = match c {
        C::List {
            filter: f,
            limit,
            json,
        } => ("list", Some(filter(f)), limit.unwrap_or(0), json.json),
        C::Flush { filter: f } => ("flush", Some(filter(f)), 0, false),
        C::Stats(j) => ("stats", None, 0, j.json),
    };
    let reply = client
        .conntrack(api::ConntrackRequest {
            op: op.into(),
            filter: f,
            limit,
        })
        .await
        .map_err(refused)?
        .into_inner();
    match c {
        C::List { .. } => {
            if json {
                let entries: Vec<Value> = reply
                    .entries
                    .iter()
                    .map(|e| {
                        json!({
                            "worker": e.worker, "network": e.network, "zone": e.zone,
                            "protocol": e.protocol,
                            "src": e.src, "sport": e.sport, "dst": e.dst, "dport": e.dport,
                            "reply_src": e.reply_src, "reply_sport": e.reply_sport,
                            "reply_dst": e.reply_dst, "reply_dport": e.reply_dport,
                            "state": e.state, "assured": e.assured,
                            "expires_in_ms": e.expires_in_ms,
                        })
                    })
                    .collect();
                return print_json(out, &Value::Array(entries));
            }
            let mut t = Table::new(&[
                "NETWORK",
                "PROTO",
                "SOURCE",
                "DESTINATION",
                "NAT",
                "STATE",
                "ASSURED",
                "EXPIRES_S",
                "WORKER",
            ])
            .right(&[7, 8]);
            for e in &reply.entries {
                t.row([
                    e.network.clone(),
                    e.protocol.clone(),
                    format!("{}:{}", e.src, e.sport),
                    format!("{}:{}", e.dst, e.dport),
                    nat_text(e),
                    e.state.clone(),
                    if e.assured { "yes" } else { "no" }.to_string(),
                    (e.expires_in_ms / 1000).to_string(),
                    e.worker.to_string(),
                ]);
            }
            write!(out, "{}", t.render())?;
            Ok(())
        }
        C::Flush { .. } => {
            writeln!(out, "flushed {} connections", reply.flushed)?;
            Ok(())
        }
        C::Stats(_) => {
            if json {
                let workers: Vec<Value> = reply
                    .workers
                    .iter()
                    .map(|w| {
                        json!({
                            "worker": w.worker, "entries": w.entries, "capacity": w.capacity,
                            "created": w.created, "expired": w.expired,
                            "early_drops": w.early_drops, "invalid": w.invalid,
                            "handed_off": w.handed_off,
                        })
                    })
                    .collect();
                return print_json(out, &Value::Array(workers));
            }
            let mut t = Table::new(&[
                "WORKER",
                "ENTRIES",
                "CAPACITY",
                "CREATED",
                "EXPIRED",
                "EARLY_DROPS",
                "INVALID",
                "HANDED_OFF",
            ])
            .right(&[0, 1, 2, 3, 4, 5, 6, 7]);
            for w in &reply.workers {
                t.row([
                    w.worker.to_string(),
                    w.entries.to_string(),
                    w.capacity.to_string(),
                    w.created.to_string(),
                    w.expired.to_string(),
                    w.early_drops.to_string(),
                    w.invalid.to_string(),
                    w.handed_off.to_string(),
                ]);
            }
            write!(out, "{}", t.render())?;
            Ok(())
        }
    }
}

/// The translation of a connection, from its two tuples: where the
/// destination went (DNAT, a service's backend) and where the source went
/// (SNAT); `-` for none.
fn nat_text(e: &api::ConntrackEntry) -> String {
    let ep = |a: &str, p: u32| {
        if a.contains(':') {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        }
    };
    let mut parts = Vec::new();
    if (e.reply_src.as_str(), e.reply_sport) != (e.dst.as_str(), e.dport) {
        parts.push(format!("dnat {}", ep(&e.reply_src, e.reply_sport)));
    }
    if (e.reply_dst.as_str(), e.reply_dport) != (e.src.as_str(), e.sport) {
        parts.push(format!("snat {}", ep(&e.reply_dst, e.reply_dport)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}
