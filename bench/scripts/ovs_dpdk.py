#!/usr/bin/env python3
"""Replay a scenario pcap through OVS-DPDK (Debian's openvswitch-switch-dpdk) on one PMD.

The OVS side of the vswitchd-vs-OVS comparison (issue #4): the same capture, replayed
by net_pcap (infinite_rx, from memory) into a net_null sink, forwarded by one PMD
thread pinned to the same core, with OpenFlow rules that do the scenario's job.

    ovs_dpdk.py run --pcap traffic.pcap --flows ovs-flows.txt [--setup setup.json]
                    [--core 1] [--seconds 10] [--warmup 2] [--memory hugepages|no-huge]
                    [--json] [--keep]
    ovs_dpdk.py vhost --sock-a A.sock --sock-b B.sock --flows ovs-flows.txt
                      [--core 1] [--control-core 0] [--memory-mb 2048]

`vhost` is the OVS side of `vswitch-bench vhost` (issue #27): two dpdkvhostuserclient
ports (OpenFlow 1 and 2) on sockets the pods serve, forwarding until stdin closes; see
cmd_vhost.

Nothing of the system's Open vSwitch is used or touched: a private ovsdb-server and
ovs-vswitchd (the DPDK build, /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk, called
directly whatever the ovs-vswitchd alternative says) run as children of this script,
tracked and stopped by PID, with their db, sockets, pidfiles and logs in a temporary
directory, inside a private network namespace (the netdev bridge's internal port is a
kernel tap device; the namespace keeps it, and its addresses and routes, off the host
and removes them with it). DPDK runs with the memory vswitch-bench chose for all three
forwarders (--memory, default no-huge here; vswitch-bench passes hugepages whenever the
machine has them, as OVS-DPDK is normally run):
    hugepages: --no-pci --file-prefix=ovsbench<pid>  (OVS 3.1 appends --in-memory; the
               pool comes from hugepages as needed, dpdk-socket-mem unset)
    no-huge:   --no-huge --legacy-mem -m 1024 --no-pci --file-prefix=ovsbench<pid> --no-shconf
               (DPDK 22.11 refuses OVS's --in-memory with --no-huge; --legacy-mem stops
               OVS from adding it)

Configuration, OVS's best known for a one-PMD forwarding benchmark:
  * one PMD thread (pmd-cpu-mask = the core), the main/handler lcore on another core
    (dpdk-lcore-mask = core 0, or 1 when the PMD is on 0);
  * all datapath caches on: the simple-match cache (automatic when the megaflow matches
    only in_port/eth_type), EMC (default insertion probability 1/100) and SMC
    (other_config:smc-enable=true), then the dpcls megaflow classifier;
  * one shared mempool (other_config:per-port-memory=false; OVS sizes it itself, 262144
    mbufs for MTU 1500, and has no knob for the count), default 2048 rx/tx descriptors;
  * fail-mode=secure (no NORMAL flow ever runs; the bridge holds only the given flows),
    the datapath flow table flushed after the flows are installed.

Settling: after the warm-up, the script waits until OVS's PMD stops sending packets to
the slow path (no new upcall for a second, at most --settle-max s), revalidating every
100 ms meanwhile so that its datapath flow limit grows sooner (see settle()). With few
flows this is a second; with 100k destination megaflows, tens of seconds; the JSON
says how long ("settled_after_s") and whether it settled.

Rates: after settling, p2's tx counter (ovs-appctl dpctl/show -s, read live from the
netdev, unlike the Interface statistics column which OVS refreshes every 5 s) is sampled
every second; the median of the per-second rates is reported. PMD stats are cleared at
the end of the warm-up and `dpif-netdev/pmd-stats-show` is read at the end, giving OVS's
own cycles per packet for the measured window.

Tunnels: --setup takes the scenario bundle's scenario.json (`vswitch-bench` writes it;
its "ovs" section gives tunnel {name, type, ofport, options}, local_ip "a.b.c.d/len",
bridge_mac and `commands`, which are run as written but aimed at this run's private
daemons: ovs-vsctl gets --db, ovs-appctl -t, ip -n <netns>; they run after br0 and the
flows exist and before the DPDK ports are added, so no packet meets a half-made setup).
Without "commands" (or with the short form below) the structured keys are used:
    {"bridge_ip": "192.0.2.1/24",            # underlay address on br0 (the LOCAL port)
     "bridge_mac": "02:..",                  # optional; default: the first frame's dst MAC
     "tunnel": {"type": "vxlan"|"geneve", "local_ip": "..", "remote_ip": "flow"|"..",
                "ofport": 3, "key": "flow", "dst_port": 4789, "options": {..}},
     "neighbours": [{"ip": "..", "mac": ".."}],   # tnl/arp/set br0 ip mac (for encap)
     "routes": [{"prefix": "10.0.0.0/8", "gw": "192.0.2.254"}]}  # ovs/route/add .. br0 gw
OVS's userspace tunnelling terminates a tunnel when a packet is output to a bridge
internal port that has an IP address and its outer dst MAC/IP/UDP port match that port's
MAC, the IP and the tunnel's port: so decap flows are `in_port=1,actions=LOCAL` (tnl_pop,
then the inner packet re-enters on the tunnel's ofport) and `in_port=3,...,actions=output:2`.
Encap (output to the tunnel port) builds the outer header from OVS's route table and
neighbour cache and sends the outer packet through br0's pipeline as if from LOCAL, so
encap flows need `in_port=LOCAL,actions=output:2` besides the neighbour entries.

Under a wrapper (--wrapper, a JSON list of words put before ovs-vswitchd's command:
vswitch-bench's `instructions` passes valgrind's callgrind), everything waits ten times
longer, and after the window p1 is deleted (no more packets) before p2's tx counter is
read once more: the JSON's "tx_packets_total" is then every packet the PMD forwarded.

Exit status: 0 done, 3 OVS-DPDK not installed (one line: make bench-deps), 2 usage or
setup refused, 1 anything else.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

OVS_DPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TOOLS = ["ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"]
TUNNEL_TYPES = {"vxlan": 4789, "geneve": 6081}


class Refused(Exception):
    """A scenario or setup this harness cannot run (exit 2)."""


def installed():
    return (os.access(OVS_DPDK, os.X_OK) and os.path.exists(SCHEMA)
            and all(shutil.which(t) for t in TOOLS))


def first_frame_dst_mac(pcap):
    """Destination MAC of the capture's first frame (classic pcap, either byte order)."""
    with open(pcap, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            raise Refused(f"{pcap}: not a pcap file")
        magic = hdr[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        else:
            raise Refused(f"{pcap}: not a classic pcap file (pcapng is not read here)")
        rec = f.read(16)
        if len(rec) < 16:
            raise Refused(f"{pcap}: no frames")
        incl = struct.unpack(endian + "IIII", rec)[2]
        frame = f.read(min(incl, 6))
        if len(frame) < 6:
            raise Refused(f"{pcap}: first frame too short")
        return ":".join(f"{b:02x}" for b in frame)


class Ovs:
    """A private ovsdb-server + ovs-vswitchd pair, children of this process."""

    def __init__(self, work, netns, wrapper=(), slow=1):
        self.work = work
        self.netns = netns
        # Words before ovs-vswitchd's command (valgrind), and how many times longer
        # everything takes under them.
        self.wrapper = list(wrapper)
        self.slow = slow
        self.db_sock = os.path.join(work, "db.sock")
        self.vsd_ctl = os.path.join(work, "ovs-vswitchd.ctl")
        self.db_ctl = os.path.join(work, "ovsdb-server.ctl")
        self.env = dict(os.environ, OVS_RUNDIR=work, OVS_LOGDIR=work, OVS_DBDIR=work,
                        OVS_SYSCONFDIR=work, OVS_PKGDATADIR="/usr/share/openvswitch")
        self.procs = {}  # name -> Popen
        self.logs = []

    def _ns(self, argv):
        return ["ip", "netns", "exec", self.netns] + argv if self.netns else argv

    def run(self, argv, check=True, timeout=90):
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                           timeout=timeout * self.slow)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): "
                               f"{(p.stderr or p.stdout).strip()}")
        return p.stdout

    def vsctl(self, *args, wait=True):
        argv = ["ovs-vsctl", f"--db=unix:{self.db_sock}", f"--timeout={90 * self.slow}"]
        if not wait:
            argv.append("--no-wait")
        return self.run(argv + list(args))

    def ofctl(self, *args):
        return self.run(["ovs-ofctl"] + list(args))

    def appctl(self, *args, check=True, timeout=30):
        return self.run(["ovs-appctl", "-t", self.vsd_ctl,
                         "--timeout=%d" % (timeout * self.slow)]
                        + list(args), check=check, timeout=timeout + 5)

    def _spawn(self, name, argv):
        log = open(os.path.join(self.work, name + ".out"), "w")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(self._ns(argv), env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _wait_for(self, path, name, seconds=30):
        deadline = time.time() + seconds * self.slow
        while not os.path.exists(path):
            p = self.procs[name]
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{name} did not start: see {self.tail(name)}")
            time.sleep(0.05)

    def tail(self, name, lines=15):
        for fn in (name + ".log", name + ".out"):
            path = os.path.join(self.work, fn)
            if os.path.exists(path):
                with open(path) as f:
                    txt = f.readlines()[-lines:]
                if txt:
                    return fn + ":\n" + "".join(txt)
        return "(no log)"

    def start_db(self):
        db = os.path.join(self.work, "conf.db")
        self.run(["ovsdb-tool", "create", db, SCHEMA])
        self._spawn("ovsdb-server", [
            "ovsdb-server", db, f"--remote=punix:{self.db_sock}",
            f"--pidfile={os.path.join(self.work, 'ovsdb-server.pid')}",
            f"--unixctl={self.db_ctl}",
            f"--log-file={os.path.join(self.work, 'ovsdb-server.log')}", "--no-chdir"])
        self._wait_for(self.db_sock, "ovsdb-server")
        self.vsctl("init", wait=False)

    def start_vswitchd(self):
        self._spawn("ovs-vswitchd", self.wrapper + [
            OVS_DPDK, f"unix:{self.db_sock}",
            f"--pidfile={os.path.join(self.work, 'ovs-vswitchd.pid')}",
            f"--unixctl={self.vsd_ctl}",
            f"--log-file={os.path.join(self.work, 'ovs-vswitchd.log')}", "--no-chdir",
            "-vconsole:off"])
        self._wait_for(self.vsd_ctl, "ovs-vswitchd", seconds=60)
        # The control socket appears before DPDK has finished; wait for the db to say so.
        deadline = time.time() + 60 * self.slow
        while True:
            if self.procs["ovs-vswitchd"].poll() is not None:
                raise RuntimeError("ovs-vswitchd exited: " + self.tail("ovs-vswitchd"))
            if self.vsctl("get", "Open_vSwitch", ".", "dpdk_initialized",
                          wait=False).strip() == "true":
                return
            if time.time() > deadline:
                raise RuntimeError("DPDK did not initialise: " + self.tail("ovs-vswitchd"))
            time.sleep(0.2)

    def stop(self):
        """ovs-appctl exit, then SIGTERM/SIGKILL by PID; never by name."""
        for name, ctl, args in (("ovs-vswitchd", self.vsd_ctl, ["exit", "--cleanup"]),
                                ("ovsdb-server", self.db_ctl, ["exit"])):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            try:
                subprocess.run(["ovs-appctl", "-t", ctl, "--timeout=10"] + args,
                               env=self.env, capture_output=True, timeout=15)
            except (subprocess.TimeoutExpired, OSError):
                pass
            for sig, grace in ((None, 10 * self.slow), (signal.SIGTERM, 5 * self.slow),
                               (signal.SIGKILL, 5)):
                if sig is not None and p.poll() is None:
                    try:
                        os.kill(p.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    p.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for log in self.logs:
            log.close()


def parse_pmd_stats(text):
    out = {}
    for key, pat in (("cycles_per_packet", r"avg cycles per packet: ([\d.]+)"),
                     ("processing_cycles_per_packet",
                      r"avg processing cycles per packet: ([\d.]+)")):
        m = re.search(pat, text)
        out[key] = float(m.group(1)) if m else None
    for key, pat in (("packets", r"packets received: (\d+)"),
                     ("simple_match_hits", r"simple match hits: (\d+)"),
                     ("emc_hits", r"emc hits: (\d+)"), ("smc_hits", r"smc hits: (\d+)"),
                     ("megaflow_hits", r"megaflow hits: (\d+)"),
                     ("upcalls_ok", r"miss with success upcall: (\d+)"),
                     ("upcalls_failed", r"miss with failed upcall: (\d+)")):
        m = re.search(pat, text)
        out[key] = int(m.group(1)) if m else None
    return out


def slow_path_misses(ovs):
    """Packets OVS's PMD has sent to the slow path so far (upcalls, ok or failed)."""
    s = parse_pmd_stats(ovs.appctl("dpif-netdev/pmd-stats-show"))
    return (s["upcalls_ok"] or 0) + (s["upcalls_failed"] or 0)


def settle(ovs, cap):
    """Waits, after the warm-up, until OVS's datapath stops sending packets to its slow
    path: no new upcall for a whole second, polled every half second. Returns the wait
    in seconds and whether it settled within `cap` seconds.

    Why: OVS installs a megaflow per upcall, but its revalidator lets the datapath hold
    only `flow_limit` flows, a limit that starts at 10000 and grows by 1000 per
    revalidation round (every max-revalidator = 500 ms) while the dumps stay quick.
    With 100k destination-MAC megaflows the datapath is still filling a minute in, and
    a short warm-up measures mostly failed upcalls (0.2-0.5 Mpps here, against 1.3
    Mpps once every megaflow is in). Revalidating every 100 ms while settling fills it
    five times sooner; the default comes back before the measured window."""
    ovs.vsctl("set", "Open_vSwitch", ".", "other_config:max-revalidator=100")
    start = time.monotonic()
    try:
        last, quiet = slow_path_misses(ovs), 0
        while time.monotonic() - start < cap:
            time.sleep(0.5)
            n = slow_path_misses(ovs)
            quiet = quiet + 1 if n == last else 0
            last = n
            if quiet >= 2:
                return round(time.monotonic() - start, 1), True
        return round(time.monotonic() - start, 1), False
    finally:
        ovs.vsctl("remove", "Open_vSwitch", ".", "other_config", "max-revalidator")


def tx_packets(ovs, port="p2"):
    """Live tx counter of `port` from dpctl/show -s."""
    out = ovs.appctl("dpctl/show", "-s", "netdev@ovs-netdev")
    m = re.search(r"port \d+: " + re.escape(port) + r" \(.*?\n(?:.*\n)*?\s+TX packets:(\d+)",
                  out)
    if not m:
        raise RuntimeError("no tx counter for %s in dpctl/show -s:\n%s" % (port, out))
    return int(m.group(1))


def parse_wrapper(text):
    """`--wrapper`'s JSON list of strings ([] when not given); None when it is not one."""
    if not text:
        return []
    try:
        wrapper = json.loads(text)
    except ValueError:
        return None
    if not isinstance(wrapper, list) or not all(isinstance(w, str) for w in wrapper):
        return None
    return wrapper


def add_netns(name):
    """A network namespace of this name, or None where one cannot be made (then
    OVS runs in the caller's)."""
    if shutil.which("ip") and subprocess.run(["ip", "netns", "add", name],
                                             capture_output=True).returncode == 0:
        return name
    return None


def normalise_setup(doc):
    """The setup: either the scenario bundle's scenario.json (its "ovs" section:
    tunnel{name,type,ofport,options}, local_ip "a.b.c.d/len", bridge_mac, commands) or
    the short form documented above (tunnel{type,local_ip,remote_ip,ofport,...},
    bridge_ip, bridge_mac, neighbours, routes)."""
    setup = dict(doc.get("ovs", doc) or {})
    if "local_ip" in setup and "bridge_ip" not in setup:
        setup["bridge_ip"] = setup.pop("local_ip")
    return setup


def translate_command(cmd, ovs, netns):
    """One of the scenario's shell commands (ovs-vsctl/ovs-appctl/ovs-ofctl/ip), aimed
    at this run's private daemons and namespace."""
    argv = shlex.split(cmd)
    if not argv:
        return None
    tool = argv[0]
    if tool == "ovs-vsctl":
        return ["ovs-vsctl", f"--db=unix:{ovs.db_sock}", "--timeout=90"] + argv[1:]
    if tool == "ovs-appctl":
        return ["ovs-appctl", "-t", ovs.vsd_ctl, "--timeout=30"] + argv[1:]
    if tool == "ovs-ofctl":
        return argv  # finds br0.mgmt through OVS_RUNDIR
    if tool == "ip":
        if not netns:
            raise Refused("the scenario's `ip` commands need a private network namespace")
        return ["ip", "-n", netns] + argv[1:]
    raise Refused(f"setup command not understood: {cmd!r}")


def configure_setup(ovs, setup, pcap, netns):
    """Tunnel port, underlay address and neighbours, before the DPDK ports exist."""
    tun = setup.get("tunnel")
    bridge_ip = setup.get("bridge_ip")
    if tun:
        ttype = tun.get("type") or tun.get("kind")
        if ttype not in TUNNEL_TYPES:
            raise Refused(f"tunnel type {ttype!r} not supported (vxlan, geneve)")
        if not bridge_ip:
            raise Refused("a tunnel scenario needs the underlay address (bridge_ip or "
                          "ovs.local_ip) in the setup")
    if bridge_ip and not netns:
        raise Refused("an underlay address needs a private network namespace (ip netns)")

    if setup.get("commands"):
        # The scenario generator's own commands, run as written (translated to this run).
        for cmd in setup["commands"]:
            argv = translate_command(cmd, ovs, netns)
            if argv:
                ovs.run(argv)
    else:
        if bridge_ip:
            mac = setup.get("bridge_mac") or first_frame_dst_mac(pcap)
            # The tap follows the bridge's hwaddr; tunnels terminate only on this MAC.
            ovs.vsctl("set", "bridge", "br0", f"other_config:hwaddr={mac}")
            ovs.run(["ip", "-n", netns, "addr", "add", bridge_ip, "dev", "br0"])
            ovs.run(["ip", "-n", netns, "link", "set", "br0", "up"])
        for r in setup.get("routes", []):
            ovs.appctl(*(["ovs/route/add", r["prefix"], "br0"]
                         + ([r["gw"]] if r.get("gw") else [])))
        if tun:
            opts = {"remote_ip": tun.get("remote_ip", "flow"), "key": tun.get("key", "flow")}
            if tun.get("local_ip"):
                opts["local_ip"] = tun["local_ip"]
            if tun.get("dst_port"):
                opts["dst_port"] = str(tun["dst_port"])
            opts.update({k: str(v) for k, v in tun.get("options", {}).items()})
            name = tun.get("name", "tun0")
            args = ["add-port", "br0", name, "--", "set", "interface", name,
                    f"type={ttype}", f"ofport_request={int(tun.get('ofport', 3))}"]
            args += [f"options:{k}={v}" for k, v in opts.items()]
            ovs.vsctl(*args)
        for n in setup.get("neighbours", []):
            ovs.appctl("tnl/arp/set", "br0", n["ip"], n["mac"])
    if tun:
        # OVS learns br0's address asynchronously (netlink); the tunnel's listener must
        # be on it before traffic is worth measuring.
        want = bridge_ip.split("/")[0]
        deadline = time.time() + 15
        while True:
            ports = ovs.appctl("tnl/ports/show", "-v")
            if want in ports:
                break
            if time.time() > deadline:
                raise RuntimeError("tunnel port never listened on %s:\n%s" % (want, ports))
            time.sleep(0.2)


def dpdk_extra(a, prefix):
    """other_config:dpdk-extra for the chosen memory (see the module docstring)."""
    if a.memory == "hugepages":
        return f"--no-pci --file-prefix={prefix}"
    return (f"--no-huge --legacy-mem -m {a.memory_mb} "
            f"--no-pci --file-prefix={prefix} --no-shconf")


def cmd_run(a):
    if not installed():
        print("OVS-DPDK not installed: make bench-deps")
        return 3
    if os.geteuid() != 0:
        print("ovs_dpdk.py: run as root (DPDK, network namespaces)", file=sys.stderr)
        return 2
    pcap = os.path.abspath(a.pcap)
    if not os.path.exists(pcap) or not os.path.exists(a.flows):
        print(f"ovs_dpdk.py: missing {pcap if not os.path.exists(pcap) else a.flows}",
              file=sys.stderr)
        return 2
    if "," in pcap or "=" in pcap:
        print("ovs_dpdk.py: the pcap path may not contain ',' or '=' (devargs)",
              file=sys.stderr)
        return 2
    setup = {}
    if a.setup:
        with open(a.setup) as f:
            setup = normalise_setup(json.load(f))

    wrapper = parse_wrapper(a.wrapper)
    if wrapper is None:
        print("ovs_dpdk.py: --wrapper takes a JSON list of strings", file=sys.stderr)
        return 2

    prefix = f"ovsbench{os.getpid()}"
    work = tempfile.mkdtemp(prefix="ovs-dpdk-bench.")
    netns = add_netns(prefix)
    if netns:
        # No IPv6 autoconfiguration traffic from the bridge's tap into the pipeline.
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], capture_output=True)
    ovs = Ovs(work, netns, wrapper, slow=10 if wrapper else 1)
    # OVS's netdev datapath makes a persistent tap, ovs-netdev, that outlives the
    # daemons: without a namespace of our own it is in the host's, and ours to
    # remove if it was not there before.
    own_tap = not netns and not os.path.exists("/sys/class/net/ovs-netdev")
    # Stop cleanly on SIGTERM/SIGINT too: the finally below must run.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ovs.start_db()
        other = 0 if a.core != 0 else 1
        ovs.vsctl("set", "Open_vSwitch", ".",
                  "other_config:dpdk-init=true",
                  f"other_config:dpdk-extra={dpdk_extra(a, prefix)}",
                  f"other_config:dpdk-lcore-mask={1 << other:#x}",
                  f"other_config:pmd-cpu-mask={1 << a.core:#x}",
                  "other_config:smc-enable=true",
                  "other_config:per-port-memory=false",
                  wait=False)
        ovs.start_vswitchd()
        tuning = {}
        if a.dpif_impl:
            ovs.appctl("dpif-netdev/dpif-impl-set", a.dpif_impl)
            tuning["dpif_impl"] = a.dpif_impl
        if a.mfex:
            ovs.appctl("dpif-netdev/miniflow-parser-set", a.mfex)
            tuning["miniflow_parser"] = a.mfex
        # Bridge first, flows next, ports last: no packet is ever handled by another rule.
        ovs.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
                  "fail-mode=secure")
        ovs.ofctl("del-flows", "br0")
        configure_setup(ovs, setup, pcap, netns)
        ovs.ofctl("add-flows", "br0", a.flows)
        ovs.vsctl("add-port", "br0", "p2", "--", "set", "interface", "p2", "type=dpdk",
                  "options:dpdk-devargs=net_null0,no-rx=1", "ofport_request=2",
                  "--", "add-port", "br0", "p1", "--", "set", "interface", "p1",
                  "type=dpdk", f"options:dpdk-devargs=net_pcap0,rx_pcap={pcap},infinite_rx=1",
                  "ofport_request=1")
        for p in ("p1", "p2"):
            err = ovs.vsctl("get", "interface", p, "error").strip()
            if err not in ("[]", ""):
                raise RuntimeError(f"port {p}: {err}")

        time.sleep(a.warmup)
        settled_after, settled = settle(ovs, a.settle_max)
        if not settled:
            print(f"ovs_dpdk.py: OVS still sends packets to its slow path after "
                  f"{settled_after} s of settling (--settle-max): its figure includes "
                  f"failed upcalls", file=sys.stderr)
        if not wrapper:
            ovs.appctl("dpif-netdev/pmd-stats-clear")
        samples = []
        last_t, last_n = time.monotonic(), tx_packets(ovs)
        start = last_t
        for i in range(a.seconds):
            time.sleep(max(0.0, start + i + 1 - time.monotonic()))
            t, n = time.monotonic(), tx_packets(ovs)
            samples.append((n - last_n) / (t - last_t) / 1e6)
            last_t, last_n = t, n
        pmd_text = ovs.appctl("dpif-netdev/pmd-stats-show")
        flows_text = ovs.appctl("dpctl/dump-flows", check=False)
        total = None
        if wrapper:
            # No more packets: the replay port goes, and the PMD, polling the sink
            # alone, sleeps between polls (up to pmd-maxsleep, 10 ms, once idle), so
            # the count of what it forwarded is final and the idle rounds before the
            # daemon exits (the wrapper counts until then) add little to its work.
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-maxsleep=10000",
                      "--", "del-port", "br0", "p1")
            total = tx_packets(ovs)
        if ovs.procs["ovs-vswitchd"].poll() is not None:
            raise RuntimeError("ovs-vswitchd died: " + ovs.tail("ovs-vswitchd"))
    except Refused as e:
        print(f"ovs_dpdk.py: refused: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyboardInterrupt) as e:
        print(f"ovs_dpdk.py: {e}", file=sys.stderr)
        if a.keep:
            print(f"ovs_dpdk.py: logs kept in {work}", file=sys.stderr)
        elif not isinstance(e, KeyboardInterrupt):
            print(ovs.tail("ovs-vswitchd"), file=sys.stderr)
        return 1
    finally:
        ovs.stop()
        if netns:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        elif own_tap and os.path.exists("/sys/class/net/ovs-netdev"):
            subprocess.run(["ip", "link", "del", "ovs-netdev"], capture_output=True)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)

    stats = parse_pmd_stats(pmd_text)
    mpps = statistics.median(samples) if samples else 0.0
    result = {"forwarder": "ovs-dpdk", "mpps": round(mpps, 3),
              "samples": [round(s, 3) for s in samples],
              "cycles_per_packet": stats["cycles_per_packet"],
              "processing_cycles_per_packet": stats["processing_cycles_per_packet"],
              "cache_hits": {k: stats[k] for k in ("simple_match_hits", "emc_hits",
                                                   "smc_hits", "megaflow_hits",
                                                   "upcalls_ok", "upcalls_failed")},
              "settled_after_s": settled_after, "settled": settled,
              "tx_packets_total": total,
              "core": a.core, "memory": a.memory, "tuning": tuning, "pmd_stats": pmd_text,
              "datapath_flows": flows_text}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"ovs-dpdk: {mpps:.2f} Mpps (median of {len(samples)} 1 s samples on core "
              f"{a.core}: {' '.join('%.2f' % s for s in samples)})")
        print(f"ovs-dpdk: measured after the datapath "
              f"{'settled' if settled else 'still missed'} ({settled_after} s past the warm-up)")
        print(f"ovs-dpdk: {stats['cycles_per_packet']} cycles/packet "
              f"({stats['processing_cycles_per_packet']} processing), per OVS's pmd-stats")
        print("cache hits: " + ", ".join(f"{k}={v}" for k, v in
                                          result["cache_hits"].items()))
    return 0


def cmd_vhost(a):
    """Two dpdkvhostuserclient ports (OpenFlow 1 and 2) on sockets the pods serve, the
    given flows between them, one PMD on --core: the OVS side of `vswitch-bench vhost`.
    Prints one JSON line {"ready": true, ...} once both ports exist without error, then
    keeps forwarding until stdin is closed (or SIGTERM/SIGINT), tears everything down
    (daemons by PID, db and sockets with the temporary directory, the namespace, the EAL
    runtime directory) and prints a last JSON line with OVS's pmd-stats-show."""
    if not installed():
        print("OVS-DPDK not installed: make bench-deps")
        return 3
    if os.geteuid() != 0:
        print("ovs_dpdk.py: run as root (DPDK, network namespaces)", file=sys.stderr)
        return 2
    for sock in (a.sock_a, a.sock_b):
        if "," in sock or "=" in sock or not os.path.isabs(sock):
            print(f"ovs_dpdk.py: {sock!r}: the socket path must be absolute, "
                  "without ',' or '='", file=sys.stderr)
            return 2
    if not os.path.exists(a.flows):
        print(f"ovs_dpdk.py: missing {a.flows}", file=sys.stderr)
        return 2
    wrapper = parse_wrapper(a.wrapper)
    if wrapper is None:
        print("ovs_dpdk.py: --wrapper takes a JSON list of strings", file=sys.stderr)
        return 2
    prefix = f"ovsvhost{os.getpid()}"
    work = tempfile.mkdtemp(prefix="ovs-dpdk-vhost.")
    netns = add_netns(prefix)
    ovs = Ovs(work, netns, wrapper, slow=10 if wrapper else 1)
    own_tap = not netns and not os.path.exists("/sys/class/net/ovs-netdev")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    pmd_text = ""
    try:
        ovs.start_db()
        ovs.vsctl("set", "Open_vSwitch", ".",
                  "other_config:dpdk-init=true",
                  f"other_config:dpdk-extra={dpdk_extra(a, prefix)}",
                  f"other_config:dpdk-lcore-mask={1 << a.control_core:#x}",
                  f"other_config:pmd-cpu-mask={1 << a.core:#x}",
                  "other_config:smc-enable=true",
                  "other_config:per-port-memory=false",
                  wait=False)
        if wrapper:
            # Under callgrind the PMD's idle polls would count: it sleeps when idle.
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-maxsleep=10000",
                      wait=False)
        ovs.start_vswitchd()
        ovs.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
                  "fail-mode=secure")
        ovs.ofctl("del-flows", "br0")
        ovs.ofctl("add-flows", "br0", a.flows)
        ovs.vsctl("add-port", "br0", "pa", "--", "set", "interface", "pa",
                  "type=dpdkvhostuserclient", f"options:vhost-server-path={a.sock_a}",
                  "ofport_request=1",
                  "--", "add-port", "br0", "pb", "--", "set", "interface", "pb",
                  "type=dpdkvhostuserclient", f"options:vhost-server-path={a.sock_b}",
                  "ofport_request=2")
        for p in ("pa", "pb"):
            err = ovs.vsctl("get", "interface", p, "error").strip()
            if err not in ("[]", ""):
                raise RuntimeError(f"port {p}: {err}")
        pids = {n: p.pid for n, p in ovs.procs.items()}
        print(json.dumps({"ready": True, "pids": pids, "netns": netns, "work": work}),
              flush=True)
        # Forward until vswitch-bench closes our stdin.
        while sys.stdin.read(4096):
            pass
        if ovs.procs["ovs-vswitchd"].poll() is not None:
            raise RuntimeError("ovs-vswitchd died: " + ovs.tail("ovs-vswitchd"))
        pmd_text = ovs.appctl("dpif-netdev/pmd-stats-show", check=False)
    except Refused as e:
        print(f"ovs_dpdk.py: refused: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyboardInterrupt) as e:
        print(f"ovs_dpdk.py: {e}", file=sys.stderr)
        if not isinstance(e, KeyboardInterrupt):
            print(ovs.tail("ovs-vswitchd"), file=sys.stderr)
        return 1
    finally:
        ovs.stop()
        if netns:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        elif own_tap and os.path.exists("/sys/class/net/ovs-netdev"):
            subprocess.run(["ip", "link", "del", "ovs-netdev"], capture_output=True)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)
    stats = parse_pmd_stats(pmd_text)
    print(json.dumps({"done": True, "cycles_per_packet": stats["cycles_per_packet"],
                      "processing_cycles_per_packet": stats["processing_cycles_per_packet"],
                      "pmd_stats": pmd_text}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="replay a pcap through OVS-DPDK and measure")
    r.add_argument("--pcap", required=True)
    r.add_argument("--flows", required=True, help="OpenFlow rules for ovs-ofctl add-flows")
    r.add_argument("--setup", help="scenario setup JSON (tunnel port, underlay IP)")
    r.add_argument("--core", type=int, default=1, help="the PMD core")
    r.add_argument("--seconds", type=int, default=10)
    r.add_argument("--warmup", type=float, default=2)
    r.add_argument("--settle-max", type=float, default=240,
                   help="after the warm-up, wait at most this many seconds for OVS to "
                   "stop sending packets to its slow path (see settle())")
    r.add_argument("--memory", choices=["hugepages", "no-huge"], default="no-huge",
                   help="EAL memory: 2 MiB hugepages or 4 KiB pages")
    r.add_argument("--memory-mb", type=int, default=1024, help="DPDK -m (no-huge only)")
    r.add_argument("--dpif-impl", help="dpif-netdev/dpif-impl-set (e.g. dpif_avx512); "
                   "default OVS's scalar dpif")
    r.add_argument("--mfex", help="dpif-netdev/miniflow-parser-set (e.g. study); default scalar")
    r.add_argument("--json", action="store_true")
    r.add_argument("--keep", action="store_true", help="keep the temp dir (db, logs)")
    r.add_argument("--wrapper", help="JSON list of words to run ovs-vswitchd under "
                   "(e.g. valgrind and its options); also makes every wait ten times "
                   "longer and reports tx_packets_total")
    v = sub.add_parser("vhost", help="two dpdkvhostuserclient ports forwarding between "
                       "pods until stdin closes (vswitch-bench vhost)")
    v.add_argument("--sock-a", required=True, help="pod A's socket (OpenFlow port 1)")
    v.add_argument("--sock-b", required=True, help="pod B's socket (OpenFlow port 2)")
    v.add_argument("--flows", required=True, help="OpenFlow rules for ovs-ofctl add-flows")
    v.add_argument("--core", type=int, default=1, help="the PMD core")
    v.add_argument("--control-core", type=int, default=0,
                   help="dpdk-lcore-mask: the main and handler threads' core")
    v.add_argument("--memory", choices=["hugepages", "no-huge"], default="no-huge")
    v.add_argument("--memory-mb", type=int, default=1024, help="DPDK -m (no-huge only)")
    v.add_argument("--wrapper", help="JSON list of words to run ovs-vswitchd under "
                   "(callgrind); the PMD then sleeps when idle and every wait is longer")
    a = ap.parse_args()
    if a.cmd == "run":
        sys.exit(cmd_run(a))
    if a.cmd == "vhost":
        sys.exit(cmd_vhost(a))


if __name__ == "__main__":
    main()
