//! `vswitchctl svc`: services and their backends, and the Maglev table the
//! dataplane holds for one (read from the published snapshot by
//! `GetServiceTable`, never recomputed here).

use std::fmt::Write as _;
use std::io::Write;

use control::api::{self, op::Op as O};
use serde_json::{json, Value};

use crate::cli::{SvcBackendCmd, SvcCmd};
use crate::client::Client;
use crate::commands::get_state;
use crate::error::{Error, Result};
use crate::table::Table;

fn print_json(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The op a `svc` write command sends; `None` for the reads.
pub fn write_op(cmd: &SvcCmd) -> Option<O> {
    Some(match cmd {
        SvcCmd::Add {
            name,
            network,
            cluster_ip,
            ports,
            external_ips,
            client_ip_affinity,
            affinity_timeout,
            table_size,
            backends,
        } => O::AddService(api::Service {
            name: name.clone(),
            network: network.clone(),
            cluster_ip: cluster_ip.clone(),
            ports: ports.clone(),
            external_ips: external_ips.clone(),
            session_affinity: if *client_ip_affinity { "ClientIP" } else { "" }.into(),
            affinity_timeout_s: affinity_timeout.unwrap_or(0),
            table_size: table_size.unwrap_or(0),
            backends: backends
                .iter()
                .map(|(address, weight)| api::Backend {
                    address: address.clone(),
                    weight: *weight,
                    state: String::new(),
                })
                .collect(),
        }),
        SvcCmd::Del { name } => O::DelService(name.clone()),
        SvcCmd::Backend(SvcBackendCmd::Add {
            service,
            address,
            weight,
            state,
        }) => O::AddBackend(api::BackendOp {
            service: service.clone(),
            backend: Some(api::Backend {
                address: address.clone(),
                weight: *weight,
                state: state.map(|s| s.as_str().to_string()).unwrap_or_default(),
            }),
        }),
        SvcCmd::Backend(SvcBackendCmd::Del { service, address }) => {
            O::DelBackend(api::BackendKey {
                service: service.clone(),
                address: address.clone(),
            })
        }
        SvcCmd::Backend(SvcBackendCmd::Set {
            service,
            address,
            weight,
            state,
        }) => O::SetBackend(api::SetBackend {
            service: service.clone(),
            address: address.clone(),
            weight: *weight,
            state: state.map(|s| s.as_str().to_string()).unwrap_or_default(),
        }),
        SvcCmd::List(_) | SvcCmd::Show { .. } => return None,
    })
}

/// A port as `svc list` shows it: `http=80/TCP:8080@30080`.
fn port_text(p: &api::ServicePort) -> String {
    let mut s = String::new();
    if !p.name.is_empty() {
        let _ = write!(s, "{}=", p.name);
    }
    let _ = write!(s, "{}/{}", p.port, p.protocol);
    if p.target_port != 0 && p.target_port != p.port {
        let _ = write!(s, ":{}", p.target_port);
    }
    if p.node_port != 0 {
        let _ = write!(s, "@{}", p.node_port);
    }
    s
}

/// `svc list`.
pub async fn list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(out, &s.services);
    }
    let mut t = Table::new(&[
        "NAME",
        "NETWORK",
        "CLUSTER-IP",
        "PORTS",
        "BACKENDS",
        "AFFINITY",
    ]);
    for v in &s.services {
        let ports: Vec<String> = v.ports.iter().map(port_text).collect();
        t.row([
            v.name.clone(),
            v.network.clone(),
            v.cluster_ip.clone(),
            ports.join(","),
            v.backends.len().to_string(),
            v.session_affinity.clone(),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `svc show NAME`: the service as the desired state holds it.
pub async fn show(client: &mut Client, name: &str, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    let Some(v) = s.services.iter().find(|v| v.name == name) else {
        return Err(Error::Refused(tonic::Status::not_found(format!(
            "no service named {}",
            control::names::quote(name)
        ))));
    };
    if json {
        return print_json(out, v);
    }
    writeln!(out, "service {} in network {}", v.name, v.network)?;
    writeln!(out, "cluster ip: {}", v.cluster_ip)?;
    if !v.external_ips.is_empty() {
        writeln!(out, "external ips: {}", v.external_ips.join(", "))?;
    }
    let ports: Vec<String> = v.ports.iter().map(port_text).collect();
    writeln!(out, "ports: {}", ports.join(", "))?;
    match v.session_affinity.as_str() {
        "ClientIP" => writeln!(out, "affinity: ClientIP for {} s", v.affinity_timeout_s)?,
        _ => writeln!(out, "affinity: None")?,
    }
    writeln!(out, "maglev table: {} slots", v.table_size)?;
    let mut t = Table::new(&["BACKEND", "WEIGHT", "STATE"]).right(&[1]);
    for b in &v.backends {
        t.row([
            b.address.clone(),
            b.weight.unwrap_or(1).to_string(),
            b.state.clone(),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `svc show NAME --table [--json]`: the table as JSON (summary per backend,
/// then one backend address per slot).
pub fn table_json(t: &api::ServiceTable) -> Value {
    let counts = slot_counts(t);
    let size = f64::from(t.size.max(1));
    let backends: Vec<Value> = t
        .backends
        .iter()
        .zip(&counts)
        .map(|(b, n)| {
            json!({
                "address": b.address,
                "weight": b.weight.unwrap_or(1),
                "state": b.state,
                "slots": n,
                "share": f64::from(*n) / size,
            })
        })
        .collect();
    let slots: Vec<&str> = t
        .slots
        .iter()
        .map(|&i| {
            t.backends
                .get(i as usize)
                .map_or("?", |b| b.address.as_str())
        })
        .collect();
    json!({
        "name": t.name,
        "generation": t.generation,
        "size": t.size,
        "backends": backends,
        "slots": slots,
    })
}

fn slot_counts(t: &api::ServiceTable) -> Vec<u32> {
    let mut c = vec![0u32; t.backends.len()];
    for &s in &t.slots {
        if let Some(n) = c.get_mut(s as usize) {
            *n += 1;
        }
    }
    c
}

/// `svc show NAME --table`.
pub async fn table(client: &mut Client, name: &str, json: bool, out: &mut dyn Write) -> Result<()> {
    let t = client
        .get_service_table(api::GetServiceTableRequest { name: name.into() })
        .await
        .map_err(Error::Refused)?
        .into_inner();
    if json {
        return print_json(out, &table_json(&t));
    }
    writeln!(
        out,
        "service {}: maglev table of {} slots (generation {})",
        t.name, t.size, t.generation
    )?;
    let counts = slot_counts(&t);
    let weight_sum: u64 = t
        .backends
        .iter()
        .filter(|b| b.state == "active")
        .map(|b| u64::from(b.weight.unwrap_or(1)))
        .sum();
    let mut s = Table::new(&[
        "BACKEND",
        "WEIGHT",
        "STATE",
        "SLOTS",
        "SHARE",
        "WEIGHT SHARE",
    ])
    .right(&[1, 3, 4, 5]);
    for (b, n) in t.backends.iter().zip(&counts) {
        let w = u64::from(b.weight.unwrap_or(1));
        let wshare = if b.state == "active" && weight_sum > 0 {
            format!("{:.2}%", 100.0 * w as f64 / weight_sum as f64)
        } else {
            "-".into()
        };
        s.row([
            b.address.clone(),
            w.to_string(),
            b.state.clone(),
            n.to_string(),
            format!("{:.2}%", 100.0 * f64::from(*n) / f64::from(t.size.max(1))),
            wshare,
        ]);
    }
    write!(out, "{}", s.render())?;
    writeln!(out)?;
    let mut slots = Table::new(&["SLOT", "BACKEND"]).right(&[0]);
    for (i, &b) in t.slots.iter().enumerate() {
        let addr = t
            .backends
            .get(b as usize)
            .map_or("?", |b| b.address.as_str());
        slots.row([i.to_string(), addr.to_string()]);
    }
    write!(out, "{}", slots.render())?;
    Ok(())
}
