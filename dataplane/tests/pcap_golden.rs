//! Every packet of tcpdump's own VXLAN and Geneve test captures, parsed by
//! `dataplane::wire` and compared field by field with what tcpdump printed for it.
//!
//! The captures and tcpdump's `.out` files live outside the project
//! (`../shared/testdata/pcaps` from the workspace root, see its README). Where that
//! folder is absent the test prints why and passes: it is an independent check, not a
//! fixture the project owns.
//!
//! Records in a `.out` file are matched to pcap records by timestamp (tcpdump prints
//! them in UTC), so filtered outputs (`geneve-vni.out` shows only VNI 0xb) check the
//! packets they show. The text is read by a small scanner for the handful of shapes
//! tcpdump prints here: `a.b.c.d.port > e.f.g.h.port:`, `mac > mac,`, `vni N`,
//! `flags [I] (0x08)`, `Flags [C]`, `options [class NAME (0xC) type 0xT len L ...]`,
//! `ttl N`, `ICMP echo request, id N`, TCP `Flags [S.]`, ARP `who-has`/`is-at`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use dataplane::wire::{
    parse, parse_inner, parse_with, GenevePacket, L3Kind, PacketMeta, ParseConfig, ParseError,
    TunnelKind, TunnelPorts,
};
use dataplane::MacAddr;

fn pcap_dir() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../../shared/testdata/pcaps"),
        PathBuf::from("/work/shared/testdata/pcaps"),
    ]
    .into_iter()
    .find(|p| p.join("README.md").is_file())
}

/// One pcap record: timestamp (seconds, microseconds) and bytes.
struct Record {
    secs: u32,
    usecs: u32,
    data: Vec<u8>,
}

/// A classic-pcap reader, enough for these files: either byte order, micro or nano
/// timestamps, Ethernet link type.
fn read_pcap(path: &Path) -> Vec<Record> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "{}: short file header", path.display());
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        m => panic!("{}: not a classic pcap (magic {m:#x})", path.display()),
    };
    let u32_at = |at: usize| {
        let a: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(
        u32_at(20),
        1,
        "{}: link type is not Ethernet",
        path.display()
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let (secs, frac, incl) = (u32_at(at), u32_at(at + 4), u32_at(at + 8) as usize);
        at += 16;
        assert!(at + incl <= b.len(), "{}: truncated record", path.display());
        let usecs = if nanos { frac / 1000 } else { frac };
        out.push(Record {
            secs,
            usecs,
            data: b[at..at + incl].to_vec(),
        });
        at += incl;
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS.uuuuuu` in UTC, as tcpdump `-tttt` prints it.
fn timestamp(secs: u32, usecs: u32) -> String {
    let days = i64::from(secs / 86_400);
    let sod = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{usecs:06}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The records of a `.out` file: (timestamp, the record's text with lines joined).
fn read_out(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        let is_start = line.starts_with(' ')
            && !first.is_empty()
            && first.chars().all(|c| c.is_ascii_digit())
            && words
                .next()
                .is_some_and(|w| w.len() == 10 && w.as_bytes()[4] == b'-');
        if is_start {
            let mut w = line.split_whitespace().skip(1);
            let ts = format!("{} {}", w.next().unwrap(), w.next().unwrap());
            let rest: Vec<&str> = w.collect();
            out.push((ts, rest.join(" ")));
        } else if let Some(last) = out.last_mut() {
            last.1.push('\n');
            last.1.push_str(line.trim());
        }
    }
    out
}

/// One side of a ` > ` in tcpdump's text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Endpoint {
    Mac(MacAddr),
    Ip(Ipv4Addr, Option<u16>),
}

fn endpoint(tok: &str) -> Option<Endpoint> {
    if let Ok(m) = tok.parse::<MacAddr>() {
        return Some(Endpoint::Mac(m));
    }
    let parts: Vec<&str> = tok.split('.').collect();
    let ip = |p: &[&str]| -> Option<Ipv4Addr> { p.join(".").parse().ok() };
    match parts.len() {
        4 => Some(Endpoint::Ip(ip(&parts)?, None)),
        5 => Some(Endpoint::Ip(ip(&parts[..4])?, Some(parts[4].parse().ok()?))),
        _ => None,
    }
}

/// Every `src > dst` pair in order, with the text offset where it was found.
fn pairs(text: &str) -> Vec<(usize, Endpoint, Endpoint)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(" > ") {
        let left = text[..at]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("");
        let right = text[at + 3..]
            .split(|c: char| c.is_whitespace() || c == ',')
            .next()
            .unwrap_or("")
            .trim_end_matches(':');
        if let (Some(l), Some(r)) = (endpoint(left), endpoint(right)) {
            out.push((at, l, r));
        }
    }
    out
}

/// The number after the first `key` in `text` (decimal or 0x-hex).
fn number_after(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    let tok: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    match tok.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => tok.parse().ok(),
    }
}

/// tcpdump's TCP flag letters as the flags byte.
fn tcp_flags(s: &str) -> u8 {
    if s == "none" {
        return 0;
    }
    s.chars()
        .map(|c| match c {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            '.' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'W' => 0x80,
            other => panic!("unknown TCP flag {other:?}"),
        })
        .fold(0, |a, b| a | b)
}

fn v4(a: Option<IpAddr>) -> Ipv4Addr {
    match a {
        Some(IpAddr::V4(a)) => a,
        other => panic!("not IPv4: {other:?}"),
    }
}

/// Geneve options as tcpdump prints them: `class/type/len` with len including the
/// 4-byte option header.
fn tcpdump_geneve_options(text: &str) -> Vec<String> {
    let mut want = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("class ") {
        rest = &rest[i..];
        let h = &rest[rest.find("(0x").unwrap() + 3..];
        let class = u32::from_str_radix(&h[..h.find(')').unwrap()], 16).unwrap();
        let type_ = number_after(rest, "type ").unwrap();
        let len = number_after(rest, " len ").unwrap();
        want.push(format!("{class:#x}/{type_:#x}/{len}"));
        rest = &rest[6..];
    }
    want
}

/// Compares one packet with tcpdump's text; returns how many fields were compared.
fn check(ctx: &str, frame: &[u8], text: &str, cfg: &ParseConfig) -> usize {
    let m = parse_with(frame, cfg).unwrap_or_else(|e| panic!("{ctx}: parse: {e}"));
    let mut n = 0;
    let mut eq = |what: &str, got: String, want: String| {
        assert_eq!(got, want, "{ctx}: {what}\n{text}");
        n += 1;
    };
    let ps = pairs(text);
    let mut it = ps.iter().peekable();
    // Outer L2 (with -e) and L3/L4.
    if let Some((_, Endpoint::Mac(s), Endpoint::Mac(d))) = it.peek() {
        eq(
            "outer MACs",
            format!("{} > {}", m.src_mac, m.dst_mac),
            format!("{s} > {d}"),
        );
        it.next();
        eq(
            "frame length",
            frame.len().to_string(),
            number_after(text, "length ").unwrap().to_string(),
        );
    }
    let Some((outer_at, Endpoint::Ip(sip, sport), Endpoint::Ip(dip, dport))) = it.next() else {
        panic!("{ctx}: no outer IP pair in {text}")
    };
    eq("outer src", v4(m.src_addr()).to_string(), sip.to_string());
    eq("outer dst", v4(m.dst_addr()).to_string(), dip.to_string());
    eq(
        "outer ports",
        format!("{:?}", (m.src_port, m.dst_port)),
        format!("{:?}", (sport.unwrap(), dport.unwrap())),
    );
    let after = &text[*outer_at..];
    if text.starts_with("IP (") {
        eq(
            "outer ttl",
            m.ttl.to_string(),
            number_after(text, "ttl ").unwrap().to_string(),
        );
        eq(
            "outer IP length",
            (m.l3_end - m.l3_offset).to_string(),
            number_after(text, "length ").unwrap().to_string(),
        );
    }
    if after.contains("[no cksum]") {
        let c = &frame[usize::from(m.l4_offset) + 6..][..2];
        eq("UDP checksum 0", format!("{c:?}"), "[0, 0]".into());
    }
    // Tunnel header.
    let first_line = after.lines().next().unwrap_or("");
    let tunnel_hdr = &frame[usize::from(m.payload_offset)..usize::from(m.inner_end)];
    if first_line.contains("VXLAN") {
        eq("tunnel", format!("{:?}", m.tunnel), "Vxlan".into());
        eq(
            "vxlan flags",
            m.tunnel_flags.to_string(),
            number_after(first_line, "flags [I] (").unwrap().to_string(),
        );
    } else if first_line.contains("Geneve") {
        eq("tunnel", format!("{:?}", m.tunnel), "Geneve".into());
        let g = GenevePacket::new_checked(tunnel_hdr).unwrap();
        let flags = &first_line[first_line.find("Geneve, Flags [").unwrap() + 15..];
        let flags = &flags[..flags.find(']').unwrap()];
        eq(
            "geneve C",
            g.critical().to_string(),
            flags.contains('C').to_string(),
        );
        eq(
            "geneve O",
            g.oam().to_string(),
            flags.contains('O').to_string(),
        );
        let want = tcpdump_geneve_options(first_line);
        if !want.is_empty() {
            let got: Vec<String> = g
                .options()
                .map(|o| format!("{:#x}/{:#x}/{}", o.class, o.type_, o.wire_len()))
                .collect();
            eq("geneve options", got.join(","), want.join(","));
            let crit: Vec<bool> = g.options().map(|o| o.critical).collect();
            let want_crit: Vec<bool> = first_line
                .match_indices("type 0x")
                .map(|(i, _)| {
                    first_line[i + 5..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .ends_with("(C)")
                })
                .collect();
            eq(
                "geneve critical options",
                format!("{crit:?}"),
                format!("{want_crit:?}"),
            );
        } else if let Some(bytes) = number_after(first_line, "options [") {
            eq(
                "geneve option bytes",
                g.opt_len().to_string(),
                bytes.to_string(),
            );
        } else {
            eq("geneve no options", g.opt_len().to_string(), "0".into());
        }
    } else {
        panic!("{ctx}: neither VXLAN nor Geneve in {text}");
    }
    eq(
        "vni",
        m.vni.to_string(),
        number_after(first_line, "vni ").unwrap().to_string(),
    );

    // Inner packet.
    let inner_frame = &frame[usize::from(m.inner_offset)..usize::from(m.inner_end)];
    let i = parse_inner(frame, &m, cfg).unwrap_or_else(|e| panic!("{ctx}: inner: {e}"));
    let inner_text = match after.find('\n') {
        Some(nl) => &after[nl..],
        // One-line output (-vni, -tcp): the inner packet follows the tunnel header.
        None => &after[after.find("vni ").unwrap()..],
    };
    if let Some((_, Endpoint::Mac(s), Endpoint::Mac(d))) = it.peek() {
        eq(
            "inner MACs",
            format!("{} > {}", i.src_mac, i.dst_mac),
            format!("{s} > {d}"),
        );
        it.next();
        eq(
            "inner length",
            inner_frame.len().to_string(),
            number_after(inner_text, "length ").unwrap().to_string(),
        );
    }
    if inner_text.contains("who-has") || inner_text.contains("is-at") {
        eq("inner l3", format!("{:?}", i.l3), "Arp".into());
        if let Some(at) = inner_text.find("who-has ") {
            let w: Vec<&str> = inner_text[at..].split_whitespace().collect();
            eq("arp op", i.arp_op.to_string(), "1".into());
            eq("arp target", v4(i.dst_addr()).to_string(), w[1].into());
            eq(
                "arp sender",
                v4(i.src_addr()).to_string(),
                w[3].trim_end_matches(',').into(),
            );
        } else {
            let at = inner_text.find("Reply ").unwrap();
            let w: Vec<&str> = inner_text[at..].split_whitespace().collect();
            eq("arp op", i.arp_op.to_string(), "2".into());
            eq("arp sender", v4(i.src_addr()).to_string(), w[1].into());
            let sha = MacAddr(inner_frame[22..28].try_into().unwrap());
            eq(
                "arp sender mac",
                sha.to_string(),
                w[3].trim_end_matches(',').into(),
            );
        }
        return n;
    }
    let Some((inner_at, Endpoint::Ip(sip, sport), Endpoint::Ip(dip, dport))) = it.next() else {
        panic!("{ctx}: no inner IP pair in {text}")
    };
    eq("inner l3", format!("{:?}", i.l3), "Ipv4".into());
    eq("inner src", v4(i.src_addr()).to_string(), sip.to_string());
    eq("inner dst", v4(i.dst_addr()).to_string(), dip.to_string());
    let inner_after = &text[*inner_at..];
    if let Some(ttl_at) = inner_text.find("ttl ") {
        eq(
            "inner ttl",
            i.ttl.to_string(),
            number_after(&inner_text[ttl_at..], "ttl ")
                .unwrap()
                .to_string(),
        );
    }
    if inner_after.contains("ICMP echo") {
        eq("inner proto", i.l4_proto.to_string(), "1".into());
        let ty = if inner_after.contains("echo request") {
            8
        } else {
            0
        };
        eq("icmp type", i.icmp_type.to_string(), ty.to_string());
        eq(
            "icmp id",
            i.src_port.to_string(),
            number_after(inner_after, ", id ").unwrap().to_string(),
        );
    } else if let (Some(sp), Some(dp)) = (sport, dport) {
        eq(
            "inner ports",
            format!("{:?}", (i.src_port, i.dst_port)),
            format!("{:?}", (sp, dp)),
        );
        if let Some(f) = inner_after.find("Flags [") {
            let f = &inner_after[f + 7..];
            let f = &f[..f.find(']').unwrap()];
            eq("inner proto", i.l4_proto.to_string(), "6".into());
            eq(
                "tcp flags",
                format!("{:#04x}", i.tcp_flags),
                format!("{:#04x}", tcp_flags(f)),
            );
        }
    }
    n
}

#[test]
fn tcpdump_agrees_with_wire_parse() {
    let Some(dir) = pcap_dir() else {
        println!(
            "SKIPPED: tcpdump test captures not found \
             (../../shared/testdata/pcaps from dataplane, or /work/shared/testdata/pcaps)"
        );
        return;
    };
    let mut known = ParseConfig::new(TunnelPorts::WITH_LINUX_VXLAN);
    known.geneve_known_critical.push((0, 0x80));
    let cases = [
        ("vxlan.pcap", "vxlan.out", 10),
        ("vxlan_port_8472.pcap", "vxlan_port_8472.out", 10),
        ("geneve.pcap", "geneve-vv.out", 39),
        ("geneve.pcap", "geneve-vni.out", 20),
        ("geneve.pcap", "geneve-tcp.out", 33),
        ("geneve-gcp.pcap", "geneve-gcp.out", 1),
    ];
    let mut total_fields = 0;
    for (pcap, out, want_records) in cases {
        let records = read_pcap(&dir.join(pcap));
        let texts = read_out(&dir.join(out));
        assert_eq!(texts.len(), want_records, "{out}: records");
        let mut fields = 0;
        for (k, (ts, text)) in texts.iter().enumerate() {
            let rec = records
                .iter()
                .find(|r| timestamp(r.secs, r.usecs) == *ts)
                .unwrap_or_else(|| panic!("{out} #{}: no packet at {ts} in {pcap}", k + 1));
            fields += check(&format!("{out} #{}", k + 1), &rec.data, text, &known);
        }
        println!(
            "{out}: {} packets, {fields} fields agree with tcpdump",
            texts.len()
        );
        total_fields += fields;
    }
    assert!(total_fields > 1000, "{total_fields}");
}

/// Defaults: port 8472 is not VXLAN, and an unknown critical Geneve option drops the
/// packet with its own error (RFC 8926 §3.5), counted per error.
#[test]
fn default_config_drops_unknown_critical_and_ignores_8472() {
    let Some(dir) = pcap_dir() else {
        println!("SKIPPED: tcpdump test captures not found");
        return;
    };
    let mut counts = [0u32; ParseError::COUNT];
    let mut ok = 0;
    for r in read_pcap(&dir.join("geneve.pcap")) {
        match parse(&r.data) {
            Ok(m) => {
                assert_eq!(m.tunnel, TunnelKind::Geneve);
                ok += 1;
            }
            Err(e) => counts[e.index()] += 1,
        }
    }
    // tcpdump: 19 packets with Flags [C] and a critical option, 20 without.
    assert_eq!(counts[ParseError::GeneveUnknownCritical.index()], 19);
    assert_eq!(ok, 20);
    for r in read_pcap(&dir.join("vxlan_port_8472.pcap")) {
        let m: PacketMeta = parse(&r.data).unwrap();
        assert_eq!(
            (m.tunnel, m.dst_port, m.l3),
            (TunnelKind::None, 8472, L3Kind::Ipv4)
        );
    }
}
