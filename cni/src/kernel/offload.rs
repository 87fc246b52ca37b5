//! Turning offloads off over the ethtool generic-netlink family: what
//! `ethtool -K DEV tx off` and `ethtool -K DEV gro off` do, without the process.
//!
//! The `ethtool` crate of the same project reads features but cannot set them
//! (its feature bitset's emit is unimplemented), so the one message this needs,
//! `ETHTOOL_MSG_FEATURES_SET` with a list of named bits, is built here from the
//! project's netlink packet crates. The socket is made in the calling thread's
//! network namespace, which is how the pod end's offloads are reached.

use std::io;

use netlink_packet_core::{
    DefaultNla, Emitable, ErrorBuffer, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Parseable, NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};

/// The features `ethtool -K DEV tx off` clears: every transmit checksum
/// offload (segmentation offloads then drop by the kernel's own dependencies).
pub const TX_CHECKSUM: &[&str] = &[
    "tx-checksum-ipv4",
    "tx-checksum-ip-generic",
    "tx-checksum-ipv6",
    "tx-checksum-fcoe-crc",
    "tx-checksum-sctp",
];

/// `ethtool -K DEV gro off`.
pub const GRO: &[&str] = &["rx-gro"];

// uapi/linux/ethtool_netlink.h
const ETHTOOL_GENL_NAME: &str = "ethtool";
const ETHTOOL_GENL_VERSION: u8 = 1;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_HEADER_FLAGS: u16 = 3;
const ETHTOOL_FLAG_OMIT_REPLY: u32 = 1 << 1;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSETS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;
const NLMSG_ERROR: u16 = 2;

/// A `FEATURES_SET` request's attributes, already laid out.
#[derive(Debug)]
struct FeaturesSet(Vec<DefaultNla>);

impl GenlFamily for FeaturesSet {
    fn family_name() -> &'static str {
        ETHTOOL_GENL_NAME
    }
    fn command(&self) -> u8 {
        ETHTOOL_MSG_FEATURES_SET
    }
    fn version(&self) -> u8 {
        ETHTOOL_GENL_VERSION
    }
}

impl Emitable for FeaturesSet {
    fn buffer_len(&self) -> usize {
        self.0.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.0.as_slice().emit(buffer);
    }
}

fn nested(kind: u16, inner: &[DefaultNla]) -> DefaultNla {
    let mut v = vec![0; inner.buffer_len()];
    inner.emit(&mut v);
    DefaultNla::new(kind | NLA_F_NESTED, v)
}

fn string(kind: u16, s: &str) -> DefaultNla {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    DefaultNla::new(kind, v)
}

/// The request that clears `features` on `dev` (listed bits without a value
/// flag are cleared; bits not listed are left as they are).
fn request(dev: &str, features: &[&str]) -> FeaturesSet {
    let header = nested(
        ETHTOOL_A_FEATURES_HEADER,
        &[
            string(ETHTOOL_A_HEADER_DEV_NAME, dev),
            DefaultNla::new(
                ETHTOOL_A_HEADER_FLAGS,
                ETHTOOL_FLAG_OMIT_REPLY.to_ne_bytes().to_vec(),
            ),
        ],
    );
    let bits: Vec<DefaultNla> = features
        .iter()
        .map(|f| {
            nested(
                ETHTOOL_A_BITSETS_BIT,
                &[string(ETHTOOL_A_BITSET_BIT_NAME, f)],
            )
        })
        .collect();
    let wanted = nested(
        ETHTOOL_A_FEATURES_WANTED,
        &[nested(ETHTOOL_A_BITSET_BITS, &bits)],
    );
    // A set bit would carry ETHTOOL_A_BITSET_BIT_VALUE; none of ours does.
    let _ = ETHTOOL_A_BITSET_BIT_VALUE;
    FeaturesSet(vec![header, wanted])
}

fn send<T: netlink_packet_core::NetlinkSerializable + std::fmt::Debug>(
    sock: &Socket,
    payload: T,
    flags: u16,
    seq: u32,
) -> io::Result<()> {
    let mut msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(payload),
    );
    msg.header.flags = flags;
    msg.header.sequence_number = seq;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    Ok(())
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The id the kernel gave the ethtool family.
fn family_id(sock: &Socket) -> io::Result<u16> {
    let get = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(ETHTOOL_GENL_NAME.to_owned())],
    });
    send(sock, get, NLM_F_REQUEST, 1)?;
    let (buf, _) = sock.recv_from_full()?;
    let b = NetlinkBuffer::new_checked(&buf[..]).map_err(|e| invalid(e.to_string()))?;
    if b.message_type() == NLMSG_ERROR {
        let code = ErrorBuffer::new_checked(b.payload())
            .ok()
            .and_then(|e| e.code())
            .map_or(0, |c| -c.get());
        return Err(io::Error::from_raw_os_error(code));
    }
    let header = NetlinkHeader::parse(&b).map_err(|e| invalid(e.to_string()))?;
    let reply = GenlMessage::<GenlCtrl>::deserialize(&header, b.payload())
        .map_err(|e| invalid(e.to_string()))?;
    reply
        .payload
        .nlas
        .iter()
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| invalid("the kernel's ethtool family has no id".into()))
}

/// Clears `features` on interface `dev` of the calling thread's namespace.
///
/// # Errors
/// The kernel's refusal (no such device, a feature it cannot change) or a
/// socket error.
pub fn clear(dev: &str, features: &[&str]) -> io::Result<()> {
    let mut sock = Socket::new(NETLINK_GENERIC)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let id = family_id(&sock)?;
    let mut set = GenlMessage::from_payload(request(dev, features));
    set.set_resolved_family_id(id);
    send(&sock, set, NLM_F_REQUEST | NLM_F_ACK, 2)?;
    loop {
        let (buf, _) = sock.recv_from_full()?;
        let mut at = 0;
        while at < buf.len() {
            let b = NetlinkBuffer::new_checked(&buf[at..]).map_err(|e| invalid(e.to_string()))?;
            let len = b.length() as usize;
            if b.message_type() == NLMSG_ERROR && b.sequence_number() == 2 {
                let code = ErrorBuffer::new_checked(b.payload())
                    .map_err(|e| invalid(e.to_string()))?
                    .code();
                return match code {
                    None => Ok(()),
                    Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
                };
            }
            at += (len + 3) & !3;
            if len == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_each_bit_under_wanted() {
        let r = request("eth0", GRO);
        let mut buf = vec![0; r.buffer_len()];
        r.emit(&mut buf);
        // header: the device name and the omit-reply flag
        let s = String::from_utf8_lossy(&buf);
        assert!(s.contains("eth0\0"), "{buf:?}");
        assert!(s.contains("rx-gro\0"), "{buf:?}");
        // the second top-level attribute is WANTED, nested
        let first_len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let second = (first_len + 3) & !3;
        let kind = u16::from_ne_bytes([buf[second + 2], buf[second + 3]]);
        assert_eq!(kind, ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED);
    }
}
