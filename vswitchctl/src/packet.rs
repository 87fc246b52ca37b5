//! Frames for `vswitchctl trace`, from a small description or from hex.
//!
//! A description is layers separated by `/`, each `name` or `name(key=value,...)`:
//!
//! ```text
//! eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02[,vlan=ID][,type=0x88b5])
//! arp([op=request|reply|N,]sha=MAC,spa=IP[,tha=MAC],tpa=IP)   (alone: eth is made up)
//! ipv4(src=IP,dst=IP[,ttl=64][,tos=0][,id=0][,df=0|1][,proto=N])
//! ipv6(src=IP,dst=IP[,hlim=64][,tc=0][,flow=0][,nh=N])
//! udp(sport=N,dport=N)      tcp(sport=N,dport=N[,flags=S][,seq=0][,ack=0][,win=65535])
//! icmp([type=8][,code=0][,id=0][,seq=0])     icmp6([type=128][,code=0][,id=0][,seq=0])
//! payload(len=N | hex=HEX)
//! ```
//!
//! Length fields and checksums (IPv4 header, UDP, TCP, ICMP, ICMPv6) are computed;
//! the frame is padded with zeros to Ethernet's 60-byte minimum (without FCS).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The Ethernet minimum frame length without FCS.
pub const MIN_FRAME: usize = 60;

/// One parsed layer: its name and its `key=value` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

/// Splits `SPEC` into layers (at `/` outside parentheses).
pub fn parse_spec(spec: &str) -> Result<Vec<Layer>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `)` at offset {i}"));
                }
            }
            '/' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".into());
    }
    parts.push(&spec[start..]);
    parts.into_iter().map(parse_layer).collect()
}

fn parse_layer(text: &str) -> Result<Layer, String> {
    let text = text.trim();
    let (name, body) = match text.find('(') {
        Some(open) => {
            if !text.ends_with(')') {
                return Err(format!("`{text}`: expected `)` at the end"));
            }
            (&text[..open], &text[open + 1..text.len() - 1])
        }
        None => (text, ""),
    };
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(format!(
            "`{text}`: a layer needs a name (eth, arp, ipv4, ...)"
        ));
    }
    let mut fields = BTreeMap::new();
    for kv in body.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{name}: `{kv}` is not key=value"))?;
        let k = k.trim().to_ascii_lowercase();
        if fields.insert(k.clone(), v.trim().to_string()).is_some() {
            return Err(format!("{name}: `{k}` given twice"));
        }
    }
    Ok(Layer { name, fields })
}

/// Reads the fields of one layer, refusing unknown ones.
struct Fields<'a> {
    layer: &'a Layer,
}

impl<'a> Fields<'a> {
    fn new(layer: &'a Layer, known: &[&str]) -> Result<Self, String> {
        if let Some(k) = layer.fields.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!(
                "{}: unknown field `{k}` (known: {})",
                layer.name,
                known.join(", ")
            ));
        }
        Ok(Fields { layer })
    }
    fn raw(&self, key: &str) -> Option<&'a str> {
        self.layer.fields.get(key).map(String::as_str)
    }
    fn required(&self, key: &str) -> Result<&'a str, String> {
        self.raw(key)
            .ok_or_else(|| format!("{}: `{key}` is required", self.layer.name))
    }
    fn err(&self, key: &str, what: &str) -> String {
        format!(
            "{}: {key}={}: {what}",
            self.layer.name,
            self.raw(key).unwrap_or_default()
        )
    }
    fn num(&self, key: &str, default: u64, max: u64) -> Result<u64, String> {
        let Some(v) = self.raw(key) else {
            return Ok(default);
        };
        let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        }
        .map_err(|_| self.err(key, "not a number"))?;
        if n > max {
            return Err(self.err(key, &format!("out of range (0-{max})")));
        }
        Ok(n)
    }
    fn mac(&self, key: &str, default: Option<[u8; 6]>) -> Result<[u8; 6], String> {
        match (self.raw(key), default) {
            (Some(v), _) => parse_mac(v).ok_or_else(|| self.err(key, "not a MAC address")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("{}: `{key}` is required", self.layer.name)),
        }
    }
    fn ip4(&self, key: &str) -> Result<Ipv4Addr, String> {
        self.required(key)?
            .parse()
            .map_err(|_| self.err(key, "not an IPv4 address"))
    }
    fn ip6(&self, key: &str) -> Result<Ipv6Addr, String> {
        self.required(key)?
            .parse()
            .map_err(|_| self.err(key, "not an IPv6 address"))
    }
}

/// `02:00:00:00:00:01` (or with `-`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Hex bytes; whitespace, `:` and a leading `0x` are ignored.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err("hex: odd number of digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).map_err(|_| "hex: not ASCII".to_string())?;
            u8::from_str_radix(text, 16).map_err(|_| format!("hex: `{text}` is not a hex byte"))
        })
        .collect()
}

/// Lower-case hex, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Internet checksum (RFC 1071) of `data`, folded and complemented.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.push(0);
            p.push(proto);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!("one IP version per header"),
    }
    p
}

/// The transport checksum over pseudo-header + segment; UDP's 0 is sent as 0xffff.
fn l4_checksum(outer: Option<(IpAddr, IpAddr)>, proto: u8, segment: &[u8]) -> u16 {
    let Some((src, dst)) = outer else {
        return checksum(segment);
    };
    let mut data = pseudo_header(src, dst, proto, segment.len());
    data.extend_from_slice(segment);
    let c = checksum(&data);
    if proto == 17 && c == 0 {
        0xffff
    } else {
        c
    }
}

/// What a layer's next layer is, for the ethertype / protocol fields.
fn ethertype_of(layer: Option<&Layer>) -> Option<u16> {
    match layer?.name.as_str() {
        "arp" => Some(0x0806),
        "ipv4" => Some(0x0800),
        "ipv6" => Some(0x86dd),
        _ => None,
    }
}

fn proto_of(layer: Option<&Layer>) -> Option<u8> {
    match layer?.name.as_str() {
        "icmp" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp6" => Some(58),
        _ => None,
    }
}

/// Builds the frame a description stands for.
pub fn build(spec: &str) -> Result<Vec<u8>, String> {
    let mut layers = parse_spec(spec)?;
    match layers.first().map(|l| l.name.as_str()) {
        Some("eth") => {}
        Some("arp") => {
            // A bare ARP: the Ethernet header follows from it.
            let f = Fields::new(&layers[0], ARP_FIELDS)?;
            let sha = f.mac("sha", None)?;
            let reply = arp_op(&f)? == 2;
            let dst = if reply {
                f.mac("tha", None)?
            } else {
                [0xff; 6]
            };
            let mut fields = BTreeMap::new();
            fields.insert("src".to_string(), fmt_mac(&sha));
            fields.insert("dst".to_string(), fmt_mac(&dst));
            layers.insert(
                0,
                Layer {
                    name: "eth".into(),
                    fields,
                },
            );
        }
        _ => {
            return Err("a packet starts with eth(src=..,dst=..) (or a bare arp(..))".into());
        }
    }

    // Innermost first: each layer wraps what follows it.
    let mut payload: Vec<u8> = Vec::new();
    for i in (0..layers.len()).rev() {
        let layer = &layers[i];
        let next = layers.get(i + 1);
        let outer = if i > 0 { Some(&layers[i - 1]) } else { None };
        payload = match layer.name.as_str() {
            "eth" => {
                if i != 0 {
                    return Err("eth: only as the first layer".into());
                }
                eth(layer, next, payload)?
            }
            "arp" => {
                if next.is_some() {
                    return Err("arp: nothing may follow it".into());
                }
                arp(layer)?
            }
            "ipv4" => ipv4(layer, next, payload)?,
            "ipv6" => ipv6(layer, next, payload)?,
            "udp" | "tcp" | "icmp" | "icmp6" => {
                let addrs = outer_addrs(layer, outer)?;
                match layer.name.as_str() {
                    "udp" => udp(layer, addrs, payload)?,
                    "tcp" => tcp(layer, addrs, payload)?,
                    _ => icmp(layer, addrs, payload)?,
                }
            }
            "payload" => {
                if next.is_some() {
                    return Err("payload: must be the last layer".into());
                }
                let f = Fields::new(layer, &["len", "hex"])?;
                match (f.raw("hex"), f.raw("len")) {
                    (Some(h), None) => parse_hex(h)?,
                    (None, Some(_)) => (0..f.num("len", 0, 9000)?).map(|i| i as u8).collect(),
                    _ => return Err("payload: exactly one of len=N and hex=HEX".into()),
                }
            }
            other => {
                return Err(format!(
                    "unknown layer `{other}` (eth, arp, ipv4, ipv6, udp, tcp, icmp, icmp6, payload)"
                ))
            }
        };
    }
    if payload.len() < MIN_FRAME {
        payload.resize(MIN_FRAME, 0);
    }
    Ok(payload)
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn outer_addrs(layer: &Layer, outer: Option<&Layer>) -> Result<(IpAddr, IpAddr), String> {
    let want = if layer.name == "icmp6" { "ipv6" } else { "" };
    match outer {
        Some(o) if o.name == "ipv4" && want.is_empty() => {
            let f = Fields { layer: o };
            Ok((f.ip4("src")?.into(), f.ip4("dst")?.into()))
        }
        Some(o) if o.name == "ipv6" => {
            let f = Fields { layer: o };
            Ok((f.ip6("src")?.into(), f.ip6("dst")?.into()))
        }
        _ => Err(format!(
            "{}: must follow {}",
            layer.name,
            if want.is_empty() {
                "ipv4 or ipv6"
            } else {
                want
            }
        )),
    }
}

fn eth(layer: &Layer, next: Option<&Layer>, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, &["src", "dst", "type", "vlan", "pcp"])?;
    let ethertype = match (f.raw("type"), ethertype_of(next)) {
        (Some(_), _) => f.num("type", 0, 0xffff)? as u16,
        (None, Some(t)) => t,
        (None, None) if next.is_none() || next.is_some_and(|l| l.name == "payload") => 0x88b5,
        (None, None) => {
            return Err(format!(
                "eth: `{}` cannot follow eth",
                next.map(|l| l.name.as_str()).unwrap_or_default()
            ))
        }
    };
    let mut out = Vec::with_capacity(18 + payload.len());
    out.extend_from_slice(&f.mac("dst", None)?);
    out.extend_from_slice(&f.mac("src", None)?);
    if f.raw("vlan").is_some() {
        let tci = (f.num("pcp", 0, 7)? as u16) << 13 | f.num("vlan", 0, 4095)? as u16;
        out.extend_from_slice(&0x8100u16.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

const ARP_FIELDS: &[&str] = &["op", "sha", "spa", "tha", "tpa"];

fn arp_op(f: &Fields<'_>) -> Result<u16, String> {
    match f.raw("op") {
        None | Some("request") => Ok(1),
        Some("reply") => Ok(2),
        Some(_) => Ok(f.num("op", 1, 0xffff)? as u16),
    }
}

fn arp(layer: &Layer) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, ARP_FIELDS)?;
    let op = arp_op(&f)?;
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&f.mac("sha", None)?);
    out.extend_from_slice(&f.ip4("spa")?.octets());
    out.extend_from_slice(&f.mac("tha", Some([0; 6]))?);
    out.extend_from_slice(&f.ip4("tpa")?.octets());
    Ok(out)
}

fn next_proto(
    layer: &Layer,
    f: &Fields<'_>,
    key: &str,
    next: Option<&Layer>,
) -> Result<u8, String> {
    match (f.raw(key), proto_of(next)) {
        (Some(_), _) => Ok(f.num(key, 0, 255)? as u8),
        (None, Some(p)) => Ok(p),
        (None, None) if next.is_none() || next.is_some_and(|l| l.name == "payload") => Ok(253),
        (None, None) => Err(format!(
            "{}: `{}` cannot follow it",
            layer.name,
            next.map(|l| l.name.as_str()).unwrap_or_default()
        )),
    }
}

fn ipv4(layer: &Layer, next: Option<&Layer>, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, &["src", "dst", "ttl", "tos", "id", "df", "proto"])?;
    let proto = next_proto(layer, &f, "proto", next)?;
    let total = 20 + payload.len();
    if total > 0xffff {
        return Err("ipv4: packet too long".into());
    }
    let flags: u16 = if f.num("df", 0, 1)? == 1 { 0x4000 } else { 0 };
    let mut h = Vec::with_capacity(total);
    h.push(0x45);
    h.push(f.num("tos", 0, 255)? as u8);
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&(f.num("id", 0, 0xffff)? as u16).to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    h.push(f.num("ttl", 64, 255)? as u8);
    h.push(proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&f.ip4("src")?.octets());
    h.extend_from_slice(&f.ip4("dst")?.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&payload);
    Ok(h)
}

fn ipv6(layer: &Layer, next: Option<&Layer>, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, &["src", "dst", "hlim", "tc", "flow", "nh"])?;
    let nh = next_proto(layer, &f, "nh", next)?;
    if payload.len() > 0xffff {
        return Err("ipv6: payload too long".into());
    }
    let word = 6u32 << 28 | (f.num("tc", 0, 255)? as u32) << 20 | f.num("flow", 0, 0xfffff)? as u32;
    let mut h = Vec::with_capacity(40 + payload.len());
    h.extend_from_slice(&word.to_be_bytes());
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(nh);
    h.push(f.num("hlim", 64, 255)? as u8);
    h.extend_from_slice(&f.ip6("src")?.octets());
    h.extend_from_slice(&f.ip6("dst")?.octets());
    h.extend_from_slice(&payload);
    Ok(h)
}

fn udp(layer: &Layer, addrs: (IpAddr, IpAddr), payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, &["sport", "dport"])?;
    let len = 8 + payload.len();
    if len > 0xffff {
        return Err("udp: datagram too long".into());
    }
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(&(f.num("sport", 0, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&(f.num("dport", 0, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&(len as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(&payload);
    let c = l4_checksum(Some(addrs), 17, &s);
    s[6..8].copy_from_slice(&c.to_be_bytes());
    Ok(s)
}

fn tcp_flags(f: &Fields<'_>) -> Result<u8, String> {
    let Some(v) = f.raw("flags") else {
        return Ok(0x02);
    };
    v.chars().try_fold(0u8, |acc, c| {
        let bit = match c.to_ascii_uppercase() {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            _ => return Err(f.err("flags", "letters of FSRPAU")),
        };
        Ok(acc | bit)
    })
}

fn tcp(layer: &Layer, addrs: (IpAddr, IpAddr), payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, &["sport", "dport", "flags", "seq", "ack", "win"])?;
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&(f.num("sport", 0, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&(f.num("dport", 0, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&(f.num("seq", 0, u32::MAX.into())? as u32).to_be_bytes());
    s.extend_from_slice(&(f.num("ack", 0, u32::MAX.into())? as u32).to_be_bytes());
    s.push(5 << 4);
    s.push(tcp_flags(&f)?);
    s.extend_from_slice(&(f.num("win", 65535, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(&payload);
    let c = l4_checksum(Some(addrs), 6, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    Ok(s)
}

fn icmp(layer: &Layer, addrs: (IpAddr, IpAddr), payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let f = Fields::new(layer, &["type", "code", "id", "seq"])?;
    let v6 = layer.name == "icmp6";
    let mut s = Vec::with_capacity(8 + payload.len());
    s.push(f.num("type", if v6 { 128 } else { 8 }, 255)? as u8);
    s.push(f.num("code", 0, 255)? as u8);
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(&(f.num("id", 0, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&(f.num("seq", 0, 0xffff)? as u16).to_be_bytes());
    s.extend_from_slice(&payload);
    // ICMPv4 has no pseudo-header; ICMPv6 does.
    let c = l4_checksum(v6.then_some(addrs), 58, &s);
    s[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        parse_hex(s).unwrap()
    }

    #[test]
    fn udp_frame_byte_exact() {
        let f = build(
            "eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:03)/ipv4(src=10.1.0.2,dst=10.1.0.3,ttl=64)/udp(sport=1000,dport=2000)",
        )
        .unwrap();
        // Made independently with Python's struct (IPv4 checksum 0x66cb, UDP 0xe01f),
        // padded to 60 bytes.
        let want = hex("020000000003 020000000002 0800 \
             4500001c 00000000 401166cb 0a010002 0a010003 \
             03e807d0 0008e01f 000000000000000000000000000000000000");
        assert_eq!(f, want);
        assert_eq!(checksum(&f[14..34]), 0, "the IPv4 header sums to zero");
    }

    #[test]
    fn arp_frame_byte_exact() {
        let want = hex("ffffffffffff 020000000301 0806 0001 0800 06 04 0001 \
             020000000301 0a010002 000000000000 0a010001 000000000000000000000000000000000000");
        // Bare: the Ethernet header is derived (broadcast, from sha).
        let bare = build("arp(sha=02:00:00:00:03:01,spa=10.1.0.2,tpa=10.1.0.1)").unwrap();
        assert_eq!(bare, want);
        let full = build(
            "eth(src=02:00:00:00:03:01,dst=ff:ff:ff:ff:ff:ff)/arp(op=request,sha=02:00:00:00:03:01,spa=10.1.0.2,tpa=10.1.0.1)",
        )
        .unwrap();
        assert_eq!(full, want);
    }

    #[test]
    fn arp_reply_goes_to_tha() {
        let f = build(
            "arp(op=reply,sha=02:00:00:00:00:01,spa=10.0.0.1,tha=02:00:00:00:00:02,tpa=10.0.0.2)",
        )
        .unwrap();
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&f[20..22], &[0, 2]);
    }

    #[test]
    fn icmp_echo_checksums() {
        let f = build(
            "eth(src=02:00:00:00:00:02,dst=02:00:00:00:aa:01)/ipv4(src=10.1.0.2,dst=10.2.0.3,ttl=5)/icmp(id=7,seq=1)/payload(len=20)",
        )
        .unwrap();
        assert_eq!(f.len(), 14 + 20 + 8 + 20);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[22], 5, "ttl");
        assert_eq!(f[23], 1, "protocol icmp");
        assert_eq!(checksum(&f[14..34]), 0);
        assert_eq!(f[34], 8, "echo request");
        assert_eq!(checksum(&f[34..]), 0, "ICMP checksum");
    }

    #[test]
    fn ipv6_udp_and_vlan() {
        let f = build(
            "eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:03,vlan=100)/ipv6(src=fd00:1::2,dst=fd00:1::3)/udp(sport=1,dport=2)/payload(hex=abcd)",
        )
        .unwrap();
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&f[16..18], &[0x86, 0xdd]);
        assert_eq!(f.len(), 18 + 40 + 8 + 2);
        let ip = &f[18..58];
        let udp = &f[58..];
        let mut ph = pseudo_header(
            "fd00:1::2".parse().unwrap(),
            "fd00:1::3".parse().unwrap(),
            17,
            udp.len(),
        );
        ph.extend_from_slice(udp);
        assert_eq!(checksum(&ph), 0, "UDP checksum over the v6 pseudo-header");
        assert_eq!(ip[6], 17);
    }

    #[test]
    fn tcp_syn() {
        let f = build(
            "eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:03)/ipv4(src=10.0.0.1,dst=10.0.0.2,df=1)/tcp(sport=40000,dport=80,flags=S)",
        )
        .unwrap();
        assert_eq!(&f[20..22], &[0x40, 0x00], "DF");
        assert_eq!(f[47], 0x02, "SYN");
        let mut ph = pseudo_header(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            6,
            20,
        );
        ph.extend_from_slice(&f[34..54]);
        assert_eq!(checksum(&ph), 0);
    }

    #[test]
    fn spec_errors_are_one_line_and_named() {
        let cases = [
            ("ipv4(src=1.2.3.4,dst=1.2.3.5)", "starts with eth"),
            ("eth(src=02:00:00:00:00:01)", "`dst` is required"),
            ("eth(src=zz,dst=02:00:00:00:00:01)", "not a MAC"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/ipv4(src=1.2.3.4,dst=x)", "not an IPv4"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/ipv4(src=1.2.3.4,dst=1.2.3.5,ttl=300)", "out of range"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/udp(sport=1,dport=2)", "must follow"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02,colour=red)", "unknown field"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/ipv4(src=1.2.3.4,dst=1.2.3.5", "unbalanced"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/gre", "unknown layer"),
            ("eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)/ipv4(src=1.2.3.4,dst=1.2.3.5)/icmp6", "must follow ipv6"),
        ];
        for (spec, want) in cases {
            let e = build(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn parses_layers() {
        let l = parse_spec("eth(src=a, dst=b)/icmp").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].fields["dst"], "b");
        assert_eq!(l[1].name, "icmp");
        assert!(l[1].fields.is_empty());
    }

    #[test]
    fn hex_input() {
        assert_eq!(parse_hex("0x01 02:0a\nff").unwrap(), vec![1, 2, 10, 255]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert_eq!(to_hex(&[0, 255]), "00ff");
        assert_eq!(parse_mac("02-00-00-00-00-0A"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
    }
}
