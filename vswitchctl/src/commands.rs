//! The commands, each a function of a connected [`Client`] writing its human or JSON
//! output to `out`, so that tests can call them against a real daemon and read what
//! they print. [`execute`] dispatches a parsed command line.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use control::api::{self, op::Op as O};
use serde_json::{json, Value};

use crate::cli::{self, Command};
use crate::client::Client;
use crate::doc::{self, Diff, Document, Format};
use crate::error::{Error, Result};
use crate::packet;
use crate::table::Table;

/// Options every write shares.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOpts {
    /// 0: any generation.
    pub expected_generation: u64,
}

pub(crate) fn refused(s: tonic::Status) -> Error {
    Error::Refused(s)
}

pub(crate) fn print_json(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn join(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

// ------------------------------------------------------------ dispatch

/// The local inputs of a command, read and checked before connecting (so that a
/// bad packet description or document is a usage error whatever the daemon).
#[derive(Debug, Clone, Default)]
pub enum Prepared {
    #[default]
    Nothing,
    /// `trace`: the frame.
    Frame(Vec<u8>),
    /// `apply`: the desired document.
    Document(Box<Document>),
    /// `policy add`: the fragment.
    Fragment(Box<crate::policy::Fragment>),
}

/// Reads and checks the command's local inputs (`apply`'s file and what its
/// write is conditional on, `trace`'s frame).
pub fn prepare(cli: &cli::Cli) -> Result<Prepared> {
    Ok(match &cli.command {
        Command::Apply(a) => {
            let d = read_document(&a.file)?;
            if !a.dry_run {
                apply_condition(&apply_opts(cli, a), d.generation)?;
            }
            Prepared::Document(Box::new(d))
        }
        Command::Trace(a) => Prepared::Frame(match (&a.hex, &a.packet) {
            (Some(h), None) => packet::parse_hex(h).map_err(Error::Usage)?,
            (None, Some(spec)) => packet::build(spec).map_err(Error::Usage)?,
            _ => return Err(Error::Usage("trace: give --hex or --packet".into())),
        }),
        Command::Policy(cli::PolicyCmd::Add { file, .. }) => {
            Prepared::Fragment(Box::new(crate::policy::read_fragment(file)?))
        }
        _ => Prepared::Nothing,
    })
}

/// Runs one parsed command against `client` ([`prepare`] then
/// [`execute_prepared`]). `completion` needs no client; see [`completion`].
pub async fn execute(client: &mut Client, cli: &cli::Cli, out: &mut dyn Write) -> Result<()> {
    let prepared = prepare(cli)?;
    execute_prepared(client, cli, prepared, out).await
}

/// Runs one parsed command whose local inputs [`prepare`] read.
pub async fn execute_prepared(
    client: &mut Client,
    cli: &cli::Cli,
    prepared: Prepared,
    out: &mut dyn Write,
) -> Result<()> {
    use cli::UnderlayCmd as U;
    use cli::{EndpointCmd as E, NetCmd as N, PortCmd as P, RemoteCmd as R, RouteCmd as Rt};
    let w = WriteOpts {
        expected_generation: cli.expected_generation,
    };
    match &cli.command {
        Command::Show(j) => show(client, j.json, out).await,
        Command::Health(j) => {
            let probe = crate::client::channel_for(cli).await?;
            health(client, probe, j.json, out).await
        }
        Command::Port(P::List(j)) => port_list(client, j.json, out).await,
        Command::Net(N::List(j)) => net_list(client, j.json, out).await,
        Command::Endpoint(E::List(j)) => endpoint_list(client, j.json, out).await,
        Command::Remote(R::List(j)) => remote_list(client, j.json, out).await,
        Command::Route(Rt::List(j)) => route_list(client, j.json, out).await,
        Command::Underlay(U::Show(j)) => underlay_show(client, j.json, out).await,
        Command::Svc(cli::SvcCmd::List(j)) => crate::svc::list(client, j.json, out).await,
        Command::Svc(cli::SvcCmd::Show { name, table, json }) => {
            if *table {
                crate::svc::table(client, name, json.json, out).await
            } else {
                crate::svc::show(client, name, json.json, out).await
            }
        }
        Command::Policy(
            p
            @ (cli::PolicyCmd::List(_) | cli::PolicyCmd::Show { .. } | cli::PolicyCmd::Log { .. }),
        ) => crate::policy::read(client, p, out)
            .await
            .unwrap_or_else(|| Err(Error::Usage("this command reads nothing".into()))),
        Command::Policy(cli::PolicyCmd::Add { file, replace }) => {
            let fragment = match prepared {
                Prepared::Fragment(f) => *f,
                _ => crate::policy::read_fragment(file)?,
            };
            let ops = if *replace {
                let (_, s) = get_state(client).await?;
                fragment.ops(Some(&s))
            } else {
                fragment.ops(None)
            };
            write(client, ops, w, out).await.map(drop)
        }
        Command::Policy(cli::PolicyCmd::Del { name, kind }) => {
            write(client, vec![crate::policy::del_op(name, kind)], w, out)
                .await
                .map(drop)
        }
        Command::Stats(a) => stats(client, a.json.json, a.all, out).await,
        Command::Apply(a) => {
            let desired = match prepared {
                Prepared::Document(d) => *d,
                _ => read_document(&a.file)?,
            };
            apply(client, desired, &apply_opts(cli, a), out)
                .await
                .map(drop)
        }
        Command::Get(a) => {
            let format = match a.output {
                cli::OutputFormat::Yaml => Format::Yaml,
                cli::OutputFormat::Json => Format::Json,
            };
            get(client, format, out).await
        }
        Command::Trace(a) => {
            let frame = match prepared {
                Prepared::Frame(f) => f,
                _ => match prepare(cli)? {
                    Prepared::Frame(f) => f,
                    _ => unreachable!("prepare makes a frame for trace"),
                },
            };
            trace(client, &a.in_port, frame, a.json.json, out)
                .await
                .map(drop)
        }
        Command::Capture(a) => capture(client, a, out).await,
        Command::Ct(c) => crate::ct::ct(client, c, out).await,
        Command::Completion { shell } => completion(*shell, out),
        Command::Port(_)
        | Command::Net(_)
        | Command::Endpoint(_)
        | Command::Remote(_)
        | Command::Route(_)
        | Command::Underlay(_)
        | Command::Svc(_) => match write_op(&cli.command)? {
            Some(op) => write(client, vec![op], w, out).await.map(drop),
            None => Err(Error::Usage("this command writes nothing".into())),
        },
    }
}

/// The op a write command (`port add`, `net del`, `underlay set`, …) sends: the
/// API's message built from the arguments, nothing else (the server checks it
/// as it checks the file's items). `None` for a command that only reads.
///
/// # Errors
/// Arguments that make no op (`route add` without a target).
pub fn write_op(command: &Command) -> Result<Option<O>> {
    use cli::UnderlayCmd as U;
    use cli::{EndpointCmd as E, NetCmd as N, PortCmd as P, RemoteCmd as R, RouteCmd as Rt};
    Ok(Some(match command {
        Command::Port(P::Add {
            name,
            profile,
            params,
            group,
            mtu,
        }) => {
            let port = api::Port {
                name: name.clone(),
                profile: profile.clone(),
                params: params.iter().cloned().collect(),
                group: group.clone().unwrap_or_default(),
                mtu: mtu.unwrap_or(0),
            };
            O::AddPort(port)
        }
        Command::Port(P::Del { name }) => O::DelPort(name.clone()),
        Command::Net(N::Add {
            name,
            vni,
            encap,
            tenant,
            subnets,
            gateway_ips,
            gateway_mac,
            flood_unknown,
            vteps,
            conntrack,
            no_window_tracking,
            policy_on_change,
        }) => {
            let net = api::Network {
                name: name.clone(),
                vni: *vni,
                encap: encap.map(|e| e.as_str().to_string()).unwrap_or_default(),
                tenant: tenant.clone().unwrap_or_default(),
                subnets: subnets.clone(),
                gateway_ips: gateway_ips.clone(),
                gateway_mac: gateway_mac.clone(),
                flood_unknown: *flood_unknown,
                vteps: vteps.clone(),
                conntrack: *conntrack,
                conntrack_window_tracking: no_window_tracking.then_some(false),
                policy_on_change: policy_on_change.clone().unwrap_or_default(),
            };
            O::AddNetwork(net)
        }
        Command::Net(N::Del { name }) => O::DelNetwork(name.clone()),
        Command::Endpoint(E::Add {
            network,
            mac,
            ips,
            port,
        }) => {
            let ep = api::Endpoint {
                network: network.clone(),
                mac: mac.clone(),
                ips: ips.clone(),
                port: port.clone(),
            };
            O::AddEndpoint(ep)
        }
        Command::Endpoint(E::Del { network, mac }) => {
            let key = api::EndpointKey {
                network: network.clone(),
                mac: mac.clone(),
            };
            O::DelEndpoint(key)
        }
        Command::Remote(R::Add {
            network,
            mac,
            ips,
            vtep,
        }) => {
            let ep = api::RemoteEndpoint {
                network: network.clone(),
                mac: mac.clone(),
                ips: ips.clone(),
                vtep: vtep.clone(),
            };
            O::AddRemoteEndpoint(ep)
        }
        Command::Remote(R::Del { network, mac }) => {
            let key = api::EndpointKey {
                network: network.clone(),
                mac: mac.clone(),
            };
            O::DelRemoteEndpoint(key)
        }
        Command::Route(Rt::Add {
            tenant,
            prefix,
            via_network,
            via,
            blackhole,
        }) => {
            let target = match (via_network, via, blackhole) {
                (Some(network), Some(ip), false) => api::route::Target::NextHop(api::NextHop {
                    network: network.clone(),
                    ip: ip.clone(),
                }),
                (None, None, true) => api::route::Target::Blackhole(true),
                _ => {
                    return Err(Error::Usage(
                        "route add: give --via-network N --via IP, or --blackhole".into(),
                    ))
                }
            };
            let route = api::Route {
                tenant: tenant.clone(),
                prefix: prefix.clone(),
                target: Some(target),
            };
            O::AddRoute(route)
        }
        Command::Route(Rt::Del { tenant, prefix }) => {
            let key = api::RouteKey {
                tenant: tenant.clone(),
                prefix: prefix.clone(),
            };
            O::DelRoute(key)
        }
        Command::Underlay(U::Set {
            uplink,
            local_ip,
            local_mac,
            on_link,
            gateway,
            mtu,
            neighbors,
        }) => {
            let u = api::Underlay {
                uplink: uplink.clone(),
                local_vtep_ip: local_ip.clone(),
                local_mac: local_mac.clone(),
                mtu: mtu.unwrap_or(0),
                on_link: on_link.clone(),
                gateway: gateway.clone().unwrap_or_default(),
                neighbors: neighbors
                    .iter()
                    .map(|(ip, mac)| api::StaticNeighbor {
                        ip: ip.clone(),
                        mac: mac.clone(),
                    })
                    .collect(),
            };
            O::SetUnderlay(u)
        }
        Command::Underlay(U::Clear) => O::ClearUnderlay(true),
        Command::Svc(svc) => return Ok(crate::svc::write_op(svc)),
        _ => return Ok(None),
    }))
}

/// Prints the completion script of `shell`.
pub fn completion(shell: cli::ShellKind, out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        cli::ShellKind::Bash => Shell::Bash,
        cli::ShellKind::Zsh => Shell::Zsh,
        cli::ShellKind::Fish => Shell::Fish,
    };
    let mut cmd = cli::Cli::command();
    // Into a buffer: clap_complete panics on a write error (a closed pipe).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vswitchctl", &mut buf);
    out.write_all(&buf)?;
    Ok(())
}

// ------------------------------------------------------------ writes

/// Sends `ops` as one transaction and prints `generation N (published in X us)`.
pub async fn write(
    client: &mut Client,
    ops: Vec<O>,
    opts: WriteOpts,
    out: &mut dyn Write,
) -> Result<api::WriteReply> {
    let req = api::WriteRequest {
        ops: ops.into_iter().map(|op| api::Op { op: Some(op) }).collect(),
        expected_generation: opts.expected_generation,
    };
    let reply = client.write(req).await.map_err(refused)?.into_inner();
    writeln!(
        out,
        "generation {} (published in {} us)",
        reply.generation, reply.publish_us
    )?;
    Ok(reply)
}

/// Reads a document from a file (`-`: YAML from stdin).
pub fn read_document(file: &str) -> Result<Document> {
    let (text, format) = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::Usage(format!("stdin: {e}")))?;
        (s, Format::Yaml)
    } else {
        let s = std::fs::read_to_string(file).map_err(|e| Error::Usage(format!("{file}: {e}")))?;
        (s, Format::from_path(file))
    };
    doc::parse(&text, format).map_err(|e| Error::Usage(format!("{file}: {e}")))
}

/// How `apply` writes.
#[derive(Debug, Clone, Default)]
pub struct ApplyOpts {
    /// Print the diff and change nothing.
    pub dry_run: bool,
    /// Replace the state whatever its generation.
    pub force: bool,
    /// `--expected-generation` (0: not given): wins over the document's.
    pub expected_generation: u64,
    /// Where the document came from, for messages (`state.yaml`, `stdin`).
    pub source: String,
}

fn apply_opts(cli: &cli::Cli, a: &cli::ApplyArgs) -> ApplyOpts {
    ApplyOpts {
        dry_run: a.dry_run,
        force: a.force,
        expected_generation: cli.expected_generation,
        source: match a.file.as_str() {
            "-" => "stdin".into(),
            f => f.into(),
        },
    }
}

/// The generation `apply`'s replace is conditional on (0: none): the
/// `--expected-generation` flag, else the document's own (the state it was
/// exported from), else none with `--force`.
///
/// # Errors
/// A usage error for a document that names no generation without `--force`
/// (applying it could undo writes made since it was written, unseen), and for
/// `--force` together with `--expected-generation`.
pub fn apply_condition(opts: &ApplyOpts, doc_generation: Option<u64>) -> Result<u64> {
    match (opts.force, opts.expected_generation, doc_generation) {
        (true, 0, _) => Ok(0),
        (true, _, _) => Err(Error::Usage(
            "apply: --force and --expected-generation contradict each other".into(),
        )),
        (false, g @ 1.., _) => Ok(g),
        (false, 0, Some(g @ 1..)) => Ok(g),
        (false, 0, _) => Err(Error::Usage(format!(
            "{}: no \"# generation N\" line (as \"vswitchctl get\" writes), so it could undo changes made since it was written; apply it anyway with --force",
            opts.source
        ))),
    }
}

/// Fetches the state, prints the diff to `desired`, and unless `dry_run` (or the
/// diff is empty) replaces the state, conditional on [`apply_condition`]: a
/// document exported at generation N replaces the state only while the switch
/// is still at N.
///
/// # Errors
/// [`Error::Usage`] as [`apply_condition`]; a stale document is refused by the
/// switch (`FAILED_PRECONDITION`), reported as [`Error::Refused`] naming both
/// generations.
pub async fn apply(
    client: &mut Client,
    desired: Document,
    opts: &ApplyOpts,
    out: &mut dyn Write,
) -> Result<Diff> {
    let (generation, current) = get_state(client).await?;
    let diff = doc::diff(&current, &desired);
    write!(out, "{}", diff.summary())?;
    if opts.dry_run {
        // What the real run would say about the generation, told now.
        match desired.generation {
            _ if opts.force => {}
            Some(g) if g != generation && !diff.is_empty() => writeln!(
                out,
                "note: {} is at generation {g}, the switch at {generation}: apply refuses it without --force",
                opts.source
            )?,
            None if !diff.is_empty() => writeln!(
                out,
                "note: {} names no generation: apply needs --force",
                opts.source
            )?,
            _ => {}
        }
        return Ok(diff);
    }
    if diff.is_empty() {
        writeln!(out, "generation {generation} unchanged")?;
        return Ok(diff);
    }
    let expected = apply_condition(opts, desired.generation)?;
    let from_document = expected != 0 && opts.expected_generation == 0;
    let reply = match client
        .replace(api::ReplaceRequest {
            state: Some(desired.into()),
            expected_generation: expected,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if from_document && s.code() == tonic::Code::FailedPrecondition => {
            // The switch's own "generation is M, expected N" does not say what to
            // do: name the file and the way out.
            let now = match get_state(client).await {
                Ok((g, _)) => g.to_string(),
                Err(_) => "another".into(),
            };
            return Err(Error::Refused(tonic::Status::failed_precondition(format!(
                "{} is at generation {expected} but the switch is at {now}: someone wrote since it was exported; run \"vswitchctl get\" and edit that, or apply with --force to overwrite",
                opts.source
            ))));
        }
        Err(s) => return Err(refused(s)),
    };
    writeln!(
        out,
        "generation {} (published in {} us)",
        reply.generation, reply.publish_us
    )?;
    Ok(diff)
}

// ------------------------------------------------------------ reads

/// The desired state as a document, and its generation.
pub async fn get_state(client: &mut Client) -> Result<(u64, Document)> {
    let s = client
        .get_state(api::GetStateRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    Ok((s.generation, s.state.unwrap_or_default().into()))
}

/// `get -o yaml|json`: the state as a document `apply` takes back unchanged.
pub async fn get(client: &mut Client, format: Format, out: &mut dyn Write) -> Result<()> {
    let (generation, mut d) = get_state(client).await?;
    // So that `apply -f` of this output (edited or not) is refused once the
    // switch has moved on.
    d.generation = Some(generation);
    out.write_all(doc::print(&d, format).as_bytes())?;
    Ok(())
}

pub fn health_json(h: &api::HealthReply) -> Value {
    json!({
        "serving": h.serving,
        "reason": h.reason,
        "generation": h.generation,
        "published_generation": h.published_generation,
        "liveness_timeout_ms": h.liveness_timeout_ms,
        "uptime_s": h.uptime_s,
        "version": h.version,
        "workers": h.workers.iter().map(worker_health_json).collect::<Vec<_>>(),
    })
}

pub fn worker_health_json(w: &api::WorkerHealth) -> Value {
    json!({
        "index": w.index,
        "core": w.core,
        "alive": w.alive,
        "heartbeat": w.heartbeat,
        "heartbeat_age_ms": w.heartbeat_age_ms,
        "generation": w.generation,
        "stuck_since_unix_ms": w.stuck_since_unix_ms,
        "stuck_since": stuck_since(w),
        "reason": w.reason,
    })
}

/// When a worker got stuck, in UTC; `None` while it is alive.
fn stuck_since(w: &api::WorkerHealth) -> Option<String> {
    (w.stuck_since_unix_ms > 0).then(|| {
        control::liveness::format_utc(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(w.stuck_since_unix_ms),
        )
    })
}

/// The status line of `show` and `health`, and one line per stuck worker.
fn write_health_lines(out: &mut dyn Write, generation: u64, h: &api::HealthReply) -> Result<()> {
    writeln!(
        out,
        "generation {generation}, {}, up {}, version {}",
        if h.serving { "serving" } else { "NOT serving" },
        fmt_uptime(h.uptime_s),
        or_dash(&h.version)
    )?;
    for w in h.workers.iter().filter(|w| !w.alive) {
        writeln!(out, "  {}", or_dash(&w.reason))?;
    }
    if !h.serving && h.workers.iter().all(|w| w.alive) {
        // A daemon that says why only in the top-level reason.
        writeln!(out, "  {}", or_dash(&h.reason))?;
    }
    Ok(())
}

/// `health`: liveness per worker, and the standard `grpc.health.v1` statuses
/// (asked over `probe`, a channel to the same daemon). Not serving is an error
/// (exit 1) after the report, so the command is a probe in itself.
pub async fn health(
    client: &mut Client,
    probe: tonic::transport::Channel,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let h = client
        .health(api::HealthRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let mut probe = HealthClient::new(probe);
    let mut grpc = BTreeMap::new();
    for service in control::service::HEALTH_SERVICES {
        let status = match probe
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
        {
            Ok(r) => ServingStatus::try_from(r.into_inner().status)
                .map_or("UNKNOWN", |s| s.as_str_name())
                .to_owned(),
            // A daemon without grpc.health.v1 (older), or a name it does not know.
            Err(e) => format!("error: {:?}", e.code()),
        };
        grpc.insert(service, status);
    }
    if json {
        let mut v = health_json(&h);
        v["grpc_health"] = json!(grpc);
        print_json(out, &v)?;
    } else {
        write_health_lines(out, h.generation, &h)?;
        writeln!(
            out,
            "published generation {}, liveness bound {} ms",
            h.published_generation, h.liveness_timeout_ms
        )?;
        writeln!(out)?;
        let mut t = Table::new(&[
            "WORKER",
            "CORE",
            "ALIVE",
            "HEARTBEAT_AGE",
            "ROUNDS",
            "GENERATION",
            "STUCK_SINCE",
        ])
        .right(&[3, 4, 5]);
        for w in &h.workers {
            t.row([
                w.index.to_string(),
                w.core.to_string(),
                if w.alive { "yes" } else { "NO" }.to_string(),
                format!("{} ms", w.heartbeat_age_ms),
                w.heartbeat.to_string(),
                w.generation.to_string(),
                stuck_since(w).unwrap_or_else(|| "-".into()),
            ]);
        }
        write!(out, "{}", t.render())?;
        writeln!(out)?;
        let statuses: Vec<String> = grpc.iter().map(|(k, v)| format!("{k:?} {v}")).collect();
        writeln!(out, "grpc.health.v1: {}", statuses.join(", "))?;
    }
    if h.serving {
        Ok(())
    } else {
        // The daemon answered, and said it is sick: exit 1, as for a refusal
        // (UNAVAILABLE would read as "no daemon there", exit 3).
        Err(Error::Refused(tonic::Status::failed_precondition(format!(
            "not serving: {}",
            or_dash(&h.reason)
        ))))
    }
}

pub fn port_status_json(p: &api::PortStatus) -> Value {
    json!({
        "name": p.name,
        "profile": p.profile,
        "driver": p.driver,
        "dpdk_port_id": p.dpdk_port_id,
        "link_up": p.link_up,
        "speed_mbps": p.speed_mbps,
        "mac": p.mac,
        "rx_packets": p.rx_packets,
        "tx_packets": p.tx_packets,
        "dropped": p.dropped,
        "not_plugged": p.not_plugged,
    })
}

pub fn stats_json(s: &api::Stats) -> Value {
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes,
                "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes, "dropped": p.dropped,
                "imissed": p.imissed, "ierrors": p.ierrors, "oerrors": p.oerrors,
                "rx_nombuf": p.rx_nombuf,
            })
        })
        .collect();
    let workers: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            json!({
                "index": w.index, "core": w.core, "rx_packets": w.rx_packets,
                "tx_packets": w.tx_packets, "busy_rounds": w.busy_rounds,
                "idle_rounds": w.idle_rounds, "generation": w.generation,
                "busy_ns": w.busy_ns, "idle_ns": w.idle_ns,
                "tx_lock_contended": w.tx_lock_contended,
                "flow_table": {
                    "hits": w.flow_hits, "misses": w.flow_misses,
                    "installs": w.flow_installs, "evictions": w.flow_evictions,
                    "skipped_installs": w.flow_skipped_installs,
                    "bypassed": w.flow_bypassed,
                    "revalidations": w.flow_revalidations,
                    "entries": w.flow_entries, "capacity": w.flow_capacity,
                },
                "conntrack": {
                    "entries": w.ct_entries, "capacity": w.ct_capacity,
                    "created": w.ct_created, "expired": w.ct_expired,
                    "early_drops": w.ct_early_drops, "invalid": w.ct_invalid,
                    "handed_off": w.ct_handed_off,
                },
                "lb": { "new_connections": w.lb_new_connections },
            })
        })
        .collect();
    let drops: BTreeMap<&String, &u64> = s.drops.iter().collect();
    json!({
        "generation": s.generation,
        "ports": ports,
        "workers": workers,
        "drops": drops,
        "generated": s.generated,
        "mbufs_in_use": s.mbufs_in_use,
    })
}

pub fn trace_json(t: &api::TraceReply) -> Value {
    json!({
        "generation": t.generation,
        "stages": t.stages.iter().map(|s| json!({"stage": s.stage, "detail": s.detail})).collect::<Vec<_>>(),
        "verdict": t.verdict,
        "out_port": t.out_port,
        "drop_reason": t.drop_reason,
        "frame_after": packet::to_hex(&t.frame_after),
    })
}

fn ports_table(ports: &[api::PortStatus]) -> Table {
    let mut t =
        Table::new(&["PORT", "PROFILE", "DRIVER", "LINK", "RX", "TX", "DROPPED"]).right(&[4, 5, 6]);
    for p in ports {
        let link = match (p.link_up, p.speed_mbps) {
            _ if !p.not_plugged.is_empty() => format!("not plugged: {}", p.not_plugged),
            (false, _) => "down".to_string(),
            (true, 0) => "up".to_string(),
            (true, s) => format!("up {s}M"),
        };
        t.row([
            p.name.clone(),
            p.profile.clone(),
            p.driver.clone(),
            link,
            p.rx_packets.to_string(),
            p.tx_packets.to_string(),
            p.dropped.to_string(),
        ]);
    }
    t
}

fn networks_table(nets: &[api::Network]) -> Table {
    let mut t = Table::new(&[
        "NETWORK",
        "VNI",
        "ENCAP",
        "TENANT",
        "SUBNETS",
        "GATEWAY_IPS",
        "GATEWAY_MAC",
        "FLOOD",
        "VTEPS",
    ])
    .right(&[1]);
    for n in nets {
        t.row([
            n.name.clone(),
            n.vni.to_string(),
            or_dash(&n.encap).replace('-', "vxlan"),
            or_dash(&n.tenant).replace('-', "default"),
            join(&n.subnets),
            join(&n.gateway_ips),
            n.gateway_mac.clone(),
            if n.flood_unknown { "yes" } else { "no" }.to_string(),
            join(&n.vteps),
        ]);
    }
    t
}

/// The share of a worker's measured time spent busy, as OVS's `pmd-stats-show`
/// gives it ("-" before any time is measured).
fn busy_percent(busy_ns: u64, idle_ns: u64) -> String {
    let total = busy_ns.saturating_add(idle_ns);
    if total == 0 {
        return "-".into();
    }
    format!("{:.1}", busy_ns as f64 * 100.0 / total as f64)
}

fn fmt_uptime(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `show`: health and generation, ports, networks, underlay and counts.
pub async fn show(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let health = client
        .health(api::HealthRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let (generation, state) = get_state(client).await?;
    let ports = client
        .list_ports(api::ListPortsRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .ports;
    if json {
        let v = json!({
            "generation": generation,
            "health": health_json(&health),
            "ports": ports.iter().map(port_status_json).collect::<Vec<_>>(),
            "networks": state.networks,
            "underlay": state.underlay,
            "counts": {
                "ports": state.ports.len(),
                "patches": state.patches.len(),
                "l2": state.l2.len(),
                "networks": state.networks.len(),
                "endpoints": state.endpoints.len(),
                "remote_endpoints": state.remote_endpoints.len(),
                "routes": state.routes.len(),
                "services": state.services.len(),
            },
        });
        return print_json(out, &v);
    }
    write_health_lines(out, generation, &health)?;
    writeln!(out)?;
    if ports.is_empty() {
        writeln!(out, "no ports")?;
    } else {
        write!(out, "{}", ports_table(&ports).render())?;
    }
    writeln!(out)?;
    if state.networks.is_empty() {
        writeln!(out, "no virtual networks")?;
    } else {
        write!(out, "{}", networks_table(&state.networks).render())?;
    }
    writeln!(out)?;
    match &state.underlay {
        Some(u) => writeln!(
            out,
            "underlay: uplink {}, vtep {}, mac {}, on-link {}, gateway {}",
            u.uplink,
            u.local_vtep_ip,
            u.local_mac,
            u.on_link,
            or_dash(&u.gateway)
        )?,
        None => writeln!(out, "underlay: none")?,
    }
    writeln!(
        out,
        "endpoints: {} local, {} remote; routes: {}; patches: {}; l2 entries: {}; services: {}",
        state.endpoints.len(),
        state.remote_endpoints.len(),
        state.routes.len(),
        state.patches.len(),
        state.l2.len(),
        state.services.len()
    )?;
    Ok(())
}

/// `port list`: ports as they run.
pub async fn port_list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let ports = client
        .list_ports(api::ListPortsRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .ports;
    if json {
        return print_json(out, &ports.iter().map(port_status_json).collect::<Vec<_>>());
    }
    write!(out, "{}", ports_table(&ports).render())?;
    Ok(())
}

/// `net list`.
pub async fn net_list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(out, &s.networks);
    }
    write!(out, "{}", networks_table(&s.networks).render())?;
    Ok(())
}

/// `endpoint list`.
pub async fn endpoint_list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(out, &s.endpoints);
    }
    let mut t = Table::new(&["NETWORK", "MAC", "IPS", "PORT"]);
    for e in &s.endpoints {
        t.row([
            e.network.clone(),
            e.mac.clone(),
            join(&e.ips),
            e.port.clone(),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `remote list`.
pub async fn remote_list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(out, &s.remote_endpoints);
    }
    let mut t = Table::new(&["NETWORK", "MAC", "IPS", "VTEP"]);
    for e in &s.remote_endpoints {
        t.row([
            e.network.clone(),
            e.mac.clone(),
            join(&e.ips),
            e.vtep.clone(),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `route list`.
pub async fn route_list(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(out, &s.routes);
    }
    let mut t = Table::new(&["TENANT", "PREFIX", "TARGET"]);
    for r in &s.routes {
        let target = match &r.target {
            Some(api::route::Target::NextHop(nh)) => format!("via {} in {}", nh.ip, nh.network),
            Some(api::route::Target::Blackhole(true)) => "blackhole".to_string(),
            _ => "-".to_string(),
        };
        t.row([
            or_dash(&r.tenant).replace('-', "default"),
            r.prefix.clone(),
            target,
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `underlay show`.
pub async fn underlay_show(client: &mut Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, s) = get_state(client).await?;
    if json {
        return print_json(out, &s.underlay);
    }
    let Some(u) = s.underlay else {
        writeln!(out, "no underlay")?;
        return Ok(());
    };
    let mtu = if u.mtu == 0 {
        "1500 (default)".to_string()
    } else {
        u.mtu.to_string()
    };
    let neighbors: Vec<String> = u
        .neighbors
        .iter()
        .map(|n| format!("{}={}", n.ip, n.mac))
        .collect();
    let mut t = Table::new(&["KEY", "VALUE"]);
    t.row(["uplink", &u.uplink]);
    t.row(["local_vtep_ip", &u.local_vtep_ip]);
    t.row(["local_mac", &u.local_mac]);
    t.row(["mtu", &mtu]);
    t.row(["on_link", &u.on_link]);
    t.row(["gateway", or_dash(&u.gateway)]);
    t.row(["neighbors", &join(&neighbors)]);
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `stats`: ports, workers, drops (non-zero unless `all`).
pub async fn stats(client: &mut Client, json: bool, all: bool, out: &mut dyn Write) -> Result<()> {
    let s = client
        .get_stats(api::GetStatsRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    if json {
        return print_json(out, &stats_json(&s));
    }
    writeln!(
        out,
        "generation {}, generated {}, mbufs in use {}",
        s.generation, s.generated, s.mbufs_in_use
    )?;
    writeln!(out)?;
    let mut t = Table::new(&[
        "PORT",
        "RX_PKTS",
        "RX_BYTES",
        "TX_PKTS",
        "TX_BYTES",
        "DROPPED",
        "IMISSED",
        "IERRORS",
        "OERRORS",
        "RX_NOMBUF",
    ])
    .right(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for p in &s.ports {
        t.row([
            p.name.clone(),
            p.rx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.tx_packets.to_string(),
            p.tx_bytes.to_string(),
            p.dropped.to_string(),
            p.imissed.to_string(),
            p.ierrors.to_string(),
            p.oerrors.to_string(),
            p.rx_nombuf.to_string(),
        ]);
    }
    write!(out, "{}", t.render())?;
    writeln!(out)?;
    let mut t = Table::new(&[
        "WORKER",
        "CORE",
        "RX_PKTS",
        "TX_PKTS",
        "BUSY",
        "IDLE",
        "BUSY%",
        "GEN",
        "TX_LOCK_CONTENDED",
    ])
    .right(&[0, 1, 2, 3, 4, 5, 6, 7, 8]);
    for w in &s.workers {
        t.row([
            w.index.to_string(),
            w.core.to_string(),
            w.rx_packets.to_string(),
            w.tx_packets.to_string(),
            w.busy_rounds.to_string(),
            w.idle_rounds.to_string(),
            busy_percent(w.busy_ns, w.idle_ns),
            w.generation.to_string(),
            w.tx_lock_contended.to_string(),
        ]);
    }
    write!(out, "{}", t.render())?;
    writeln!(out)?;
    let mut t = Table::new(&[
        "WORKER",
        "FLOWS",
        "CAPACITY",
        "HITS",
        "MISSES",
        "INSTALLS",
        "EVICTIONS",
        "SKIPPED",
        "REVALIDATED",
    ])
    .right(&[0, 1, 2, 3, 4, 5, 6, 7, 8]);
    for w in &s.workers {
        t.row([
            w.index.to_string(),
            w.flow_entries.to_string(),
            w.flow_capacity.to_string(),
            w.flow_hits.to_string(),
            w.flow_misses.to_string(),
            w.flow_installs.to_string(),
            w.flow_evictions.to_string(),
            w.flow_skipped_installs.to_string(),
            w.flow_revalidations.to_string(),
        ]);
    }
    write!(out, "{}", t.render())?;
    writeln!(out)?;
    if s.workers.iter().any(|w| w.ct_capacity > 0) {
        let mut t = Table::new(&[
            "WORKER",
            "CONNECTIONS",
            "CAPACITY",
            "CREATED",
            "EXPIRED",
            "EARLY_DROPS",
            "INVALID",
            "LB_NEW",
        ])
        .right(&[0, 1, 2, 3, 4, 5, 6, 7]);
        for w in &s.workers {
            t.row([
                w.index.to_string(),
                w.ct_entries.to_string(),
                w.ct_capacity.to_string(),
                w.ct_created.to_string(),
                w.ct_expired.to_string(),
                w.ct_early_drops.to_string(),
                w.ct_invalid.to_string(),
                w.lb_new_connections.to_string(),
            ]);
        }
        write!(out, "{}", t.render())?;
        writeln!(out)?;
    }
    let drops: BTreeMap<&String, &u64> = s.drops.iter().filter(|(_, n)| all || **n > 0).collect();
    if drops.is_empty() {
        writeln!(out, "no drops")?;
    } else {
        let mut t = Table::new(&["DROP_REASON", "PACKETS"]).right(&[1]);
        for (reason, n) in drops {
            t.row([reason.to_string(), n.to_string()]);
        }
        write!(out, "{}", t.render())?;
    }
    Ok(())
}

/// `trace`: the stages one per line (`stage: detail`), then the verdict.
pub async fn trace(
    client: &mut Client,
    in_port: &str,
    frame: Vec<u8>,
    json: bool,
    out: &mut dyn Write,
) -> Result<api::TraceReply> {
    let len = frame.len();
    let reply = client
        .trace(api::TraceRequest {
            in_port: in_port.to_string(),
            frame,
        })
        .await
        .map_err(refused)?
        .into_inner();
    if json {
        print_json(out, &trace_json(&reply))?;
        return Ok(reply);
    }
    write!(out, "{}", render_trace(&reply, in_port, len))?;
    Ok(reply)
}

/// The human form of a trace reply.
pub fn render_trace(reply: &api::TraceReply, in_port: &str, len: usize) -> String {
    let mut s = format!(
        "in_port: {in_port} ({len} bytes, generation {})\n",
        reply.generation
    );
    for st in &reply.stages {
        s.push_str(&format!("{}: {}\n", st.stage, st.detail));
    }
    let mut verdict = reply.verdict.clone();
    if !reply.out_port.is_empty() {
        verdict.push_str(&format!(" {}", reply.out_port));
    }
    if !reply.drop_reason.is_empty() {
        verdict.push_str(&format!(" ({})", reply.drop_reason));
    }
    s.push_str(&format!("verdict: {verdict}\n"));
    if !reply.frame_after.is_empty() {
        s.push_str(&format!(
            "frame_after: {}\n",
            packet::to_hex(&reply.frame_after)
        ));
    }
    s
}

/// Streams a port's frames into a classic pcap file (microsecond timestamps,
/// Ethernet), so tcpdump and tshark read it.
pub async fn capture(client: &mut Client, a: &cli::CaptureArgs, out: &mut dyn Write) -> Result<()> {
    use std::io::Write as _;
    let direction = match a.direction {
        cli::CaptureDirection::Rx => "rx",
        cli::CaptureDirection::Tx => "tx",
        cli::CaptureDirection::Both => "both",
    };
    let file = std::fs::File::create(&a.file)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", a.file.display())))?;
    let mut w = std::io::BufWriter::new(file);
    let local = |e: std::io::Error| Error::Local(format!("{}: {e}", a.file.display()));
    // The pcap global header: magic, version 2.4, zone 0, sigfigs 0, snaplen, Ethernet.
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&header).map_err(local)?;
    let mut stream = client
        .capture(api::CaptureRequest {
            port: a.port.clone(),
            direction: direction.into(),
            count: a.count.unwrap_or(0),
            seconds: a.seconds.unwrap_or(0),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let (mut n, mut dropped) = (0u64, 0u64);
    while let Some(pkt) = stream.message().await.map_err(refused)? {
        let secs = (pkt.timestamp_ns / 1_000_000_000) as u32;
        let usecs = ((pkt.timestamp_ns % 1_000_000_000) / 1000) as u32;
        let len = pkt.data.len() as u32;
        let mut rec = Vec::with_capacity(16 + pkt.data.len());
        rec.extend_from_slice(&secs.to_le_bytes());
        rec.extend_from_slice(&usecs.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&pkt.data);
        w.write_all(&rec).map_err(local)?;
        n += 1;
        dropped = pkt.dropped;
    }
    w.flush().map_err(local)?;
    writeln!(
        out,
        "{n} packets captured on {} into {} ({dropped} copies dropped by the switch)",
        a.port,
        a.file.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(force: bool, expected_generation: u64) -> ApplyOpts {
        ApplyOpts {
            dry_run: false,
            force,
            expected_generation,
            source: "state.yaml".into(),
        }
    }

    #[test]
    fn apply_is_conditional_on_the_documents_generation() {
        assert_eq!(apply_condition(&opts(false, 0), Some(7)).unwrap(), 7);
        // The flag wins over the document; --force makes it unconditional.
        assert_eq!(apply_condition(&opts(false, 9), Some(7)).unwrap(), 9);
        assert_eq!(apply_condition(&opts(false, 9), None).unwrap(), 9);
        assert_eq!(apply_condition(&opts(true, 0), Some(7)).unwrap(), 0);
        assert_eq!(apply_condition(&opts(true, 0), None).unwrap(), 0);
        // No generation (0 is none: the switch starts at 1), no --force: a usage
        // error that names the file and the way out.
        for g in [None, Some(0)] {
            let e = apply_condition(&opts(false, 0), g).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let m = e.to_string();
            assert!(
                m.starts_with("state.yaml: ") && m.contains("--force"),
                "{m}"
            );
        }
        let e = apply_condition(&opts(true, 3), Some(7)).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
