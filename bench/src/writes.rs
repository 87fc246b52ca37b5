//! `vswitch-bench writes`: what control-plane writes cost at scale, measured
//! against a real `vswitchd` over its gRPC socket.
//!
//! The daemon runs two forwarding ports, a replayed capture patched to a null
//! sink, so that every write is published to a worker that is forwarding; the
//! state is loaded with one `Replace` of `--endpoints` remote endpoints and
//! `--routes` static routes. Then, each as a figure with no threshold (this
//! machine is noisy; medians and tails are reported):
//!
//! - one-endpoint writes (add, then delete, of a remote endpoint), one after
//!   the other: the server's receive-to-published time (`publish_us` of the
//!   reply) and the client's round trip;
//! - one-route writes (add, then delete, of a /24 in the tenant's VRF: a
//!   blackhole, then one through an endpoint), likewise;
//! - a CNI plugin's pod writes: a port (`net_null`) and a local endpoint behind
//!   it in one write, and the write that deletes both, `--rounds` / 4 times;
//! - network adds (`--rounds` / 8 of them, left in place: a network delete
//!   takes the whole-state path), alternately in the routes' tenant and in a
//!   tenant of its own;
//! - one write of `--bulk` endpoint adds, and the write that deletes them;
//! - a write of 200 route adds whose op 100 is invalid (a prefix with host
//!   bits, then a next hop in no network), timed until refused;
//! - back-to-back one-endpoint writes for `--seconds`, with the forwarding
//!   stream's rate and drops over the same window beside the rate without
//!   writes;
//! - services (issue #25), last, so that they weigh on no figure above:
//!   service adds (one port, 10 backends, a table of 65537 slots), then one
//!   backend's weight changed back and forth with one service in the state
//!   and again with `--services` (1,000), the same service each time: its
//!   table alone is rebuilt, so the cost must not grow with the number of
//!   services.
//! - network policy (issue #26), after the services: `--policies` (3,000)
//!   NetworkPolicies over `--policy-pods` (3,000) pods with named ports (as
//!   policy endpoints, at the remote endpoints' addresses), loaded in writes
//!   of 100; then one policy replaced (a delete and an add of the same name
//!   in one write, its port changed) `--policy-updates` (200) times: the
//!   server's receive-to-published time and the client's round trip (API
//!   call made → reply, which comes once the snapshot is published). The
//!   whole set is recompiled for each update, on the control thread.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use control::api::{self, op::Op as K, route::Target};
use serde_json::{json, Value};

use crate::runner::{ChildGuard, WorkDir};

/// What to measure.
#[derive(Debug, Clone)]
pub struct WritesOptions {
    /// The vswitchd binary.
    pub vswitchd: PathBuf,
    /// Remote endpoints in the state.
    pub endpoints: u32,
    /// Static routes in the state.
    pub routes: u32,
    /// One-endpoint writes to time.
    pub rounds: u32,
    /// Endpoints in the bulk write.
    pub bulk: u32,
    /// Length of the sustained-write window.
    pub seconds: u64,
    /// The worker's core.
    pub core: usize,
    /// Services in the state for the second backend-weight figure.
    pub services: u32,
    /// NetworkPolicies in the state for the policy-update figure.
    pub policies: u32,
    /// Pods (policy endpoints with named ports) for it.
    pub policy_pods: u32,
    /// Policy updates to time.
    pub policy_updates: u32,
}

const NETWORK: &str = "bulk";
const TENANT: &str = "t";
const VTEP: &str = "192.0.2.2";

fn mac(i: u32) -> String {
    format!(
        "02:10:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 255,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

/// The i-th address of the network's /9 (10.128.0.0/9, gateway at the top).
fn addr(i: u32) -> String {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 10)) + i).to_string()
}

fn remote(i: u32) -> api::RemoteEndpoint {
    api::RemoteEndpoint {
        network: NETWORK.into(),
        mac: mac(i),
        ips: vec![addr(i)],
        vtep: VTEP.into(),
    }
}

fn add_remote(i: u32) -> api::Op {
    api::Op {
        op: Some(K::AddRemoteEndpoint(remote(i))),
    }
}

fn del_remote(i: u32) -> api::Op {
    api::Op {
        op: Some(K::DelRemoteEndpoint(api::EndpointKey {
            network: NETWORK.into(),
            mac: mac(i),
        })),
    }
}

fn del_route(i: u32) -> api::Op {
    api::Op {
        op: Some(K::DelRoute(api::RouteKey {
            tenant: TENANT.into(),
            prefix: route(i).prefix,
        })),
    }
}

/// Route i: a /24 in 20.0.0.0/8 and up, blackholed.
fn route(i: u32) -> api::Route {
    let base = u32::from(Ipv4Addr::new(20, 0, 0, 0)) + (i << 8);
    api::Route {
        tenant: TENANT.into(),
        prefix: format!("{}/24", Ipv4Addr::from(base)),
        target: Some(Target::Blackhole(true)),
    }
}

fn config(dir: &Path, core: usize, pcap: &Path) -> String {
    format!(
        r#"[eal]
memory_mb = 512
in_memory = true
[dataplane]
workers = [{core}]
idle_sleep_max_us = 0
stats_file = "{stats}"
stats_interval_ms = 100
[control]
socket = "{sock}"
state_file = "{state}"
pcap_dirs = ["{dir}/pcap"]
socket_dirs = ["{dir}/vhost"]
[[port]]
name = "replay"
profile = "pcap"
rx_pcap = "{pcap}"
infinite_rx = true
[[port]]
name = "sink"
profile = "null"
[[port]]
name = "uplink"
profile = "null"
[[patch]]
from = "replay"
to = "sink"
[underlay]
uplink = "uplink"
local_vtep_ip = "192.0.2.1"
local_mac = "02:00:00:00:ff:01"
on_link = "192.0.2.0/24"
[[network]]
name = "{NETWORK}"
vni = 300
tenant = "{TENANT}"
subnets = ["10.128.0.0/9"]
gateway_ips = ["10.255.255.254"]
gateway_mac = "02:00:00:00:aa:01"
"#,
        stats = dir.join("stats.json").display(),
        sock = dir.join("ctl.sock").display(),
        state = dir.join("state.json").display(),
        dir = dir.display(),
        pcap = pcap.display(),
    )
}

/// The forwarding stream: the `l2` scenario's 64-byte frames of 1,000 flows (the
/// patch sends them to the sink whatever their addresses).
fn write_pcap(path: &Path) -> anyhow::Result<()> {
    use crate::scenario::{self, FrameSize, L2Scenario};
    let l2 = L2Scenario::new(1000, FrameSize::Fixed(64))?;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    scenario::write_pcap(&l2, 1000, file)?;
    Ok(())
}

/// Sorted microseconds' median and 99th percentile.
fn quantiles(mut v: Vec<u64>) -> Value {
    if v.is_empty() {
        return json!({"n": 0});
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({"median_us": at(0.5), "p99_us": at(0.99), "max_us": at(1.0), "n": v.len()})
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The sink's tx packets and every drop counted, from the stats file.
fn forwarded(stats: &Path) -> anyhow::Result<(u64, u64)> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(stats)?)?;
    let sink = doc["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "sink"))
        .context("no sink in the stats file")?;
    let drops: u64 = doc["drops"]
        .as_object()
        .map(|d| d.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    Ok((sink["tx_packets"].as_u64().unwrap_or(0), drops))
}

/// The forwarding rate over `window` (from the stats file, written every 100 ms).
fn rate_over(stats: &Path, window: Duration) -> anyhow::Result<(f64, u64)> {
    let (tx0, d0) = forwarded(stats)?;
    let t = Instant::now();
    std::thread::sleep(window);
    let (tx1, d1) = forwarded(stats)?;
    Ok((
        (tx1 - tx0) as f64 / t.elapsed().as_secs_f64() / 1e6,
        d1 - d0,
    ))
}

/// Runs the measurement; the report as JSON.
///
/// # Errors
/// vswitchd does not start, or a write that should succeed fails.
pub fn run(opts: &WritesOptions) -> anyhow::Result<Value> {
    let work = WorkDir::temp()?;
    let dir = work.path().to_path_buf();
    let pcap = dir.join("stream.pcap");
    write_pcap(&pcap)?;
    let cfg = dir.join("vswitchd.toml");
    std::fs::write(&cfg, config(&dir, opts.core, &pcap))?;
    let log = std::fs::File::create(dir.join("vswitchd.log"))?;
    let child = Command::new(&opts.vswitchd)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", opts.vswitchd.display()))?;
    let runtime_dir = PathBuf::from(format!("/var/run/dpdk/vswitchd{}", child.id()));
    let mut guard = ChildGuard::new(child, "TERM").removing(runtime_dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sock = dir.join("ctl.sock");
    let report = rt.block_on(measure(opts, &sock, &dir.join("stats.json"), &mut guard));
    guard.stop();
    report.map_err(|e| {
        let tail = std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        e.context(format!("vswitchd log: {}", tail.join(" | ")))
    })
}

async fn measure(
    opts: &WritesOptions,
    sock: &Path,
    stats: &Path,
    guard: &mut ChildGuard,
) -> anyhow::Result<Value> {
    let mut c = None;
    for _ in 0..300 {
        if guard.exited() {
            bail!("vswitchd exited at start");
        }
        if let Ok(client) = control::client::connect_unix(sock).await {
            c = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = c.context("vswitchd's socket did not come up in 15 s")?;

    // The state: what the file says, plus the endpoints and routes.
    let mut state = c
        .get_state(api::GetStateRequest {})
        .await?
        .into_inner()
        .state
        .unwrap_or_default();
    state
        .remote_endpoints
        .extend((0..opts.endpoints).map(remote));
    state.routes.extend((0..opts.routes).map(route));
    let t = Instant::now();
    let r = c
        .replace(api::ReplaceRequest {
            state: Some(state),
            expected_generation: 0,
        })
        .await
        .context("loading the state")?
        .into_inner();
    let load = json!({"publish_us": r.publish_us, "wall_us": micros(t.elapsed())});
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_mpps, _) = rate_over(stats, Duration::from_secs(2))?;

    // One endpoint at a time.
    let (mut publish, mut wall) = (Vec::new(), Vec::new());
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    let extra = opts.endpoints + opts.bulk + 1;
    for k in 0..opts.rounds {
        let op = if k % 2 == 0 {
            add_remote(extra)
        } else {
            del_remote(extra)
        };
        let t = Instant::now();
        let r = c
            .write(api::WriteRequest {
                ops: vec![op],
                expected_generation: 0,
            })
            .await?
            .into_inner();
        wall.push(micros(t.elapsed()));
        publish.push(r.publish_us);
        if k % 2 == 0 {
            adds.push(r.publish_us);
        } else {
            dels.push(r.publish_us);
        }
    }

    // One route at a time: a blackhole, then one through endpoint 0.
    let (mut route_publish, mut route_wall) = (Vec::new(), Vec::new());
    let (mut route_adds, mut route_dels) = (Vec::new(), Vec::new());
    let r = opts.routes + 1000;
    for k in 0..opts.rounds {
        let op = match k % 4 {
            0 => api::Op {
                op: Some(K::AddRoute(route(r))),
            },
            2 => api::Op {
                op: Some(K::AddRoute(api::Route {
                    target: Some(Target::NextHop(api::NextHop {
                        network: NETWORK.into(),
                        ip: addr(0),
                    })),
                    ..route(r)
                })),
            },
            _ => del_route(r),
        };
        let t = Instant::now();
        let reply = c
            .write(api::WriteRequest {
                ops: vec![op],
                expected_generation: 0,
            })
            .await?
            .into_inner();
        route_wall.push(micros(t.elapsed()));
        route_publish.push(reply.publish_us);
        if k % 2 == 0 {
            route_adds.push(reply.publish_us);
        } else {
            route_dels.push(reply.publish_us);
        }
    }

    // The CNI's pod add and delete: a port and its endpoint, in one write.
    let pod = |add: bool| {
        let ep = api::Endpoint {
            network: NETWORK.into(),
            mac: mac(opts.endpoints + opts.bulk + 2),
            ips: vec![addr(opts.endpoints + opts.bulk + 2)],
            port: "pod".into(),
        };
        let ops = if add {
            vec![
                K::AddPort(api::Port {
                    name: "pod".into(),
                    profile: "null".into(),
                    ..Default::default()
                }),
                K::AddEndpoint(ep),
            ]
        } else {
            vec![
                K::DelEndpoint(api::EndpointKey {
                    network: ep.network,
                    mac: ep.mac,
                }),
                K::DelPort("pod".into()),
            ]
        };
        api::WriteRequest {
            ops: ops.into_iter().map(|op| api::Op { op: Some(op) }).collect(),
            expected_generation: 0,
        }
    };
    let (mut pod_adds, mut pod_dels) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds.div_ceil(4) {
        pod_adds.push(c.write(pod(true)).await?.into_inner().publish_us);
        pod_dels.push(c.write(pod(false)).await?.into_inner().publish_us);
    }

    // Network adds: in the tenant of the 100k routes (its VRF is copied), and
    // in new tenants (a VRF of their own).
    let (mut net_same, mut net_new) = (Vec::new(), Vec::new());
    for k in 0..opts.rounds.div_ceil(8) {
        let same = k % 2 == 0;
        let n = api::Network {
            name: format!("n{k}"),
            vni: 5000 + k,
            tenant: if same { TENANT.into() } else { format!("x{k}") },
            subnets: vec![format!("172.{}.{}.0/24", 16 + k / 256, k % 256)],
            gateway_ips: vec![format!("172.{}.{}.1", 16 + k / 256, k % 256)],
            gateway_mac: "02:00:00:00:aa:02".into(),
            ..Default::default()
        };
        let r = c
            .write(api::WriteRequest {
                ops: vec![api::Op {
                    op: Some(K::AddNetwork(n)),
                }],
                expected_generation: 0,
            })
            .await?
            .into_inner();
        if same {
            net_same.push(r.publish_us);
        } else {
            net_new.push(r.publish_us);
        }
    }

    // A bulk write and its undoing.
    let bulk = |add: bool| api::WriteRequest {
        ops: (opts.endpoints..opts.endpoints + opts.bulk)
            .map(|i| if add { add_remote(i) } else { del_remote(i) })
            .collect(),
        expected_generation: 0,
    };
    let t = Instant::now();
    let add = c.write(bulk(true)).await?.into_inner();
    let add_wall = micros(t.elapsed());
    let t = Instant::now();
    let del = c.write(bulk(false)).await?.into_inner();
    let del_wall = micros(t.elapsed());

    // Refusals: 200 route adds, op 100 invalid.
    let mut refusals = serde_json::Map::new();
    for (name, bad) in [
        (
            "host_bits",
            api::Route {
                prefix: "10.61.1.0/16".into(),
                ..route(0)
            },
        ),
        (
            "unknown_network",
            api::Route {
                prefix: "30.0.0.0/24".into(),
                target: Some(Target::NextHop(api::NextHop {
                    network: "nowhere".into(),
                    ip: "10.9.9.9".into(),
                })),
                ..route(0)
            },
        ),
    ] {
        let mut ops: Vec<api::Op> = (0..200)
            .map(|i| api::Op {
                op: Some(K::AddRoute(route(opts.routes + i))),
            })
            .collect();
        ops[100] = api::Op {
            op: Some(K::AddRoute(bad)),
        };
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let e = c
                .write(api::WriteRequest {
                    ops: ops.clone(),
                    expected_generation: 0,
                })
                .await
                .err()
                .context("the invalid write was accepted")?;
            times.push(micros(t.elapsed()));
            if !e.message().starts_with("op 100 ") {
                bail!("refusal blamed the wrong op: {}", e.message());
            }
        }
        refusals.insert(name.into(), quantiles(times));
    }

    // Sustained writes beside the stream.
    let (tx0, d0) = forwarded(stats)?;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(opts.seconds) {
        let op = if n % 2 == 0 {
            add_remote(extra)
        } else {
            del_remote(extra)
        };
        c.write(api::WriteRequest {
            ops: vec![op],
            expected_generation: 0,
        })
        .await?;
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (tx1, d1) = forwarded(stats)?;
    let services = services(&mut c, opts).await?;
    let policies = policies(&mut c, opts, guard.id()).await?;
    Ok(json!({
        "services": services,
        "policies": policies,
        "state": {"remote_endpoints": opts.endpoints, "routes": opts.routes},
        "load_replace": load,
        "one_endpoint": {
            "publish": quantiles(publish),
            "client_wall": quantiles(wall),
            "publish_add": quantiles(adds),
            "publish_delete": quantiles(dels),
        },
        "one_route": {
            "publish": quantiles(route_publish),
            "client_wall": quantiles(route_wall),
            "publish_add": quantiles(route_adds),
            "publish_delete": quantiles(route_dels),
        },
        "pod_port_and_endpoint": {
            "publish_add": quantiles(pod_adds),
            "publish_delete": quantiles(pod_dels),
        },
        "network_add": {
            "routes_tenant": quantiles(net_same),
            "new_tenant": quantiles(net_new),
        },
        "bulk": {
            "ops": opts.bulk,
            "add": {"publish_us": add.publish_us, "wall_us": add_wall},
            "del": {"publish_us": del.publish_us, "wall_us": del_wall},
        },
        "refuse_200_ops_op_100_invalid": Value::Object(refusals),
        "sustained": {
            "writes": n,
            "writes_per_s": n as f64 / secs,
            "stream_mpps_during": (tx1 - tx0) as f64 / (secs + 0.25) / 1e6,
            "stream_mpps_without_writes": idle_mpps,
            "drops_during": d1 - d0,
        },
    }))
}

/// Service `k`: one port, 10 backends (endpoints' addresses), the default
/// table size.
fn service(k: u32) -> api::Service {
    api::Service {
        name: format!("svc{k}"),
        network: NETWORK.into(),
        cluster_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 10)) + k).to_string(),
        ports: vec![api::ServicePort {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
            target_port: 8080,
            node_port: 0,
        }],
        backends: (0..10)
            .map(|b| api::Backend {
                address: addr(k * 10 + b),
                weight: Some(1),
                state: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

/// The service figures: adds, then a backend weight change at 1 and at
/// `opts.services` services.
async fn services(c: &mut control::client::Client, opts: &WritesOptions) -> anyhow::Result<Value> {
    async fn one(c: &mut control::client::Client, ops: Vec<K>) -> anyhow::Result<u64> {
        Ok(c.write(api::WriteRequest {
            ops: ops.into_iter().map(|op| api::Op { op: Some(op) }).collect(),
            expected_generation: 0,
        })
        .await?
        .into_inner()
        .publish_us)
    }
    let flip = |k: u32| {
        K::SetBackend(api::SetBackend {
            service: "svc0".into(),
            address: addr(3),
            weight: Some(1 + k % 2),
            state: String::new(),
        })
    };
    let rounds = opts.rounds.div_ceil(4);
    // A network with a service is tracked, and a tracked network must be
    // its tenant's only one for now: the networks added in the routes'
    // tenant go first, in one write, untimed.
    let same: Vec<K> = (0..opts.rounds.div_ceil(8))
        .filter(|k| k % 2 == 0)
        .map(|k| K::DelNetwork(format!("n{k}")))
        .collect();
    if !same.is_empty() {
        one(c, same).await?;
    }
    let mut adds = Vec::new();
    adds.push(one(c, vec![K::AddService(service(0))]).await?);
    let mut at_one = Vec::new();
    for k in 0..rounds {
        at_one.push(one(c, vec![flip(k)]).await?);
    }
    // Up to `services`, one service per write (each a service add).
    let mut k = 1;
    while k < opts.services {
        adds.push(one(c, vec![K::AddService(service(k))]).await?);
        k += 1;
    }
    let mut at_many = Vec::new();
    for k in 0..rounds {
        at_many.push(one(c, vec![flip(k)]).await?);
    }
    Ok(json!({
        "services": opts.services,
        "table_size": 65_537,
        "backends_per_service": 10,
        "add": quantiles(adds),
        "backend_weight_at_1": quantiles(at_one),
        "backend_weight_at_n": quantiles(at_many),
    }))
}

/// Pods per app in the policy figure: a NetworkPolicy selects one app.
const APP_PODS: u32 = 30;

/// The pod addresses of app `a` (pods are the remote endpoints' addresses).
fn app(a: u32, pods: u32) -> Vec<String> {
    (0..APP_PODS)
        .map(|i| addr((a * APP_PODS + i) % pods.max(1)))
        .collect()
}

/// NetworkPolicy `k` of `pods` pods: it selects app `k % apps`, and has four
/// ingress rules, as a deployment's policy does: from another app (an IP set)
/// to a port, from a namespace-sized block (/16…/28, with an except) to a
/// range, from anywhere to a named port, and an ICMP echo rule. `port` is the
/// first rule's port (what an update changes).
fn policy(k: u32, pods: u32, port: u32) -> api::NetworkPolicy {
    let apps = (pods / APP_PODS).max(1);
    let tcp = |port: u32, end_port: u32| api::PolicyPort {
        protocol: "TCP".into(),
        port,
        end_port,
        ..Default::default()
    };
    let prefix = 16 + k % 13;
    let block = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((k % 64) << (32 - prefix));
    let hole = block + (1 << (31 - prefix));
    api::NetworkPolicy {
        name: format!("ns{}/p{k}", k % 50),
        subject: app(k % apps, pods),
        policy_types: vec!["Ingress".into()],
        ingress: vec![
            api::NetworkPolicyRule {
                peers: vec![api::PolicyPeer {
                    addresses: app((k + 1) % apps, pods),
                    ip_block: None,
                }],
                ports: vec![tcp(port, 0)],
            },
            api::NetworkPolicyRule {
                peers: vec![api::PolicyPeer {
                    addresses: vec![],
                    ip_block: Some(api::IpBlock {
                        cidr: format!("{}/{prefix}", Ipv4Addr::from(block)),
                        except: vec![format!("{}/{}", Ipv4Addr::from(hole), prefix + 2)],
                    }),
                }],
                ports: vec![tcp(9000 + k % 100, 9100 + k % 100)],
            },
            api::NetworkPolicyRule {
                peers: vec![],
                ports: vec![api::PolicyPort {
                    protocol: "TCP".into(),
                    port_name: "http".into(),
                    ..Default::default()
                }],
            },
            api::NetworkPolicyRule {
                peers: vec![],
                ports: vec![api::PolicyPort {
                    protocol: "ICMP".into(),
                    icmp_type: Some(8),
                    ..Default::default()
                }],
            },
        ],
        egress: vec![],
    }
}

/// The policy figure: `opts.policies` policies over `opts.policy_pods` pods
/// loaded, then one policy replaced `opts.policy_updates` times.
async fn policies(
    c: &mut control::client::Client,
    opts: &WritesOptions,
    pid: u32,
) -> anyhow::Result<Value> {
    async fn one(c: &mut control::client::Client, ops: Vec<K>) -> anyhow::Result<(u64, u64)> {
        let t = Instant::now();
        let publish = c
            .write(api::WriteRequest {
                ops: ops.into_iter().map(|op| api::Op { op: Some(op) }).collect(),
                expected_generation: 0,
            })
            .await?
            .into_inner()
            .publish_us;
        Ok((publish, micros(t.elapsed())))
    }
    let pods = opts.policy_pods;
    let t = Instant::now();
    for chunk in (0..pods).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|&i| {
                K::AddPolicyEndpoint(api::PolicyEndpoint {
                    name: format!("ns{}/pod{i}", i % 50),
                    addresses: vec![addr(i)],
                    named_ports: vec![api::NamedPort {
                        name: "http".into(),
                        protocol: "TCP".into(),
                        port: 8000 + i % 4,
                    }],
                })
            })
            .collect();
        one(c, ops).await?;
    }
    for chunk in (0..opts.policies).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|&k| K::AddPolicy(policy(k, pods, 80)))
            .collect();
        one(c, ops).await?;
    }
    let load_s = t.elapsed().as_secs_f64();
    let (mut publish, mut wall) = (Vec::new(), Vec::new());
    let target = opts.policies / 2;
    let cpu0 = control_cpu_s(pid);
    for u in 0..opts.policy_updates {
        let p = policy(target, pods, 81 + u % 2);
        let (pb, w) = one(c, vec![K::DelPolicy(p.name.clone()), K::AddPolicy(p)]).await?;
        publish.push(pb);
        wall.push(w);
    }
    let cpu = match (cpu0, control_cpu_s(pid)) {
        (Some(a), Some(b)) => json!((b - a) / f64::from(opts.policy_updates.max(1)) * 1e3),
        _ => Value::Null,
    };
    Ok(json!({
        "update_control_cpu_ms_mean": cpu,
        "policies": opts.policies,
        "pods": pods,
        "rules": opts.policies * 4,
        "load_s": load_s,
        "update_publish": quantiles(publish),
        "update_client_wall": quantiles(wall),
    }))
}

/// CPU seconds the daemon's threads other than its busy-polling workers
/// (`vsw-worker*`) have used: the control thread's work, which a wall-clock
/// figure on a loaded machine hides. `None` when /proc cannot tell.
fn control_cpu_s(pid: u32) -> Option<f64> {
    let tick = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())?;
    let mut ticks = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.starts_with("vsw-worker") {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        // The fields after the command's closing parenthesis: utime and stime
        // are the 12th and 13th of them.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / tick)
}

/// The report as text.
pub fn to_text(v: &Value) -> String {
    let q = |v: &Value| {
        format!(
            "median {} us, p99 {} us, max {} us (n={})",
            v["median_us"], v["p99_us"], v["max_us"], v["n"]
        )
    };
    let mut out = format!(
        "state: {} remote endpoints, {} routes (loaded by one Replace: published in {} us)\n",
        v["state"]["remote_endpoints"], v["state"]["routes"], v["load_replace"]["publish_us"]
    );
    out += &format!(
        "one-endpoint write, receive to published: {}\n",
        q(&v["one_endpoint"]["publish"])
    );
    out += &format!(
        "one-endpoint write, client round trip:    {}\n",
        q(&v["one_endpoint"]["client_wall"])
    );
    out += &format!(
        "  of which adds: {}; deletes: {}\n",
        q(&v["one_endpoint"]["publish_add"]),
        q(&v["one_endpoint"]["publish_delete"])
    );
    out += &format!(
        "one-route write, receive to published:    {}\n",
        q(&v["one_route"]["publish"])
    );
    out += &format!(
        "one-route write, client round trip:       {}\n",
        q(&v["one_route"]["client_wall"])
    );
    out += &format!(
        "  of which adds: {}; deletes: {}\n",
        q(&v["one_route"]["publish_add"]),
        q(&v["one_route"]["publish_delete"])
    );
    out += &format!(
        "pod write (port + endpoint), receive to published: add {}; delete {}\n",
        q(&v["pod_port_and_endpoint"]["publish_add"]),
        q(&v["pod_port_and_endpoint"]["publish_delete"])
    );
    out += &format!(
        "network add, receive to published: in the routes' tenant {}; in a new tenant {}\n",
        q(&v["network_add"]["routes_tenant"]),
        q(&v["network_add"]["new_tenant"])
    );
    out += &format!(
        "{}-op write: add published in {} us, delete in {} us\n",
        v["bulk"]["ops"], v["bulk"]["add"]["publish_us"], v["bulk"]["del"]["publish_us"]
    );
    for (k, r) in v["refuse_200_ops_op_100_invalid"]
        .as_object()
        .into_iter()
        .flatten()
    {
        out += &format!("refuse 200 ops, op 100 invalid ({k}): {}\n", q(r));
    }
    let s = &v["sustained"];
    out += &format!(
        "sustained: {:.0} writes/s; stream {:.2} Mpps during, {:.2} Mpps without writes; {} drops\n",
        s["writes_per_s"].as_f64().unwrap_or(0.0),
        s["stream_mpps_during"].as_f64().unwrap_or(0.0),
        s["stream_mpps_without_writes"].as_f64().unwrap_or(0.0),
        s["drops_during"]
    );
    let root = v;
    let v = &v["services"];
    out += &format!(
        "service add (10 backends, 65537 slots), receive to published: {}\n",
        q(&v["add"])
    );
    out += &format!(
        "backend weight change, receive to published: at 1 service {}; at {} services {}\n",
        q(&v["backend_weight_at_1"]),
        v["services"],
        q(&v["backend_weight_at_n"])
    );
    let v = &root["policies"];
    out += &format!(
        "policy replaced among {} policies ({} rules) over {} pods: receive to published {}; client round trip {}; control threads' CPU {:.1} ms per update\n",
        v["policies"],
        v["rules"],
        v["pods"],
        q(&v["update_publish"]),
        q(&v["update_client_wall"]),
        v["update_control_cpu_ms_mean"].as_f64().unwrap_or(f64::NAN)
    );
    out
}
