//! The output stage: where the forwarding stages sent the packet, as the
//! [`Verdict`] the worker turns into tx batches. The worker then applies the
//! output ports' own limits at transmit, which are this stage's drops:
//! `no_tx_queue`, `tx_full`, `tx_oversize` (longer than the port's MTU),
//! `flood_alloc_failed`. A trace shows this stage's record as the reply's
//! verdict, output port and drop reason.

use super::packet::{Next, PacketCtx};
use super::Verdict;
use crate::drop::DropReason;

/// The stage: the verdict for what the stages decided.
#[inline(always)]
pub(super) fn run(pc: &PacketCtx<'_, '_>) -> Verdict {
    match pc.next {
        Next::Port(port) => Verdict::Output(port),
        Next::Flood => Verdict::Flood,
        Next::FloodNetwork { net, from_tunnel } => Verdict::FloodNetwork { net, from_tunnel },
        // Every stage before decides or ends the packet; nothing is sent when one
        // did not.
        Next::Undecided | Next::Route | Next::Remote { .. } => {
            debug_assert!(false, "no stage decided where {:?} goes", pc.next);
            Verdict::Drop(DropReason::NoOutput)
        }
    }
}
