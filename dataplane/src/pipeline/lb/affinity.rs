//! ClientIP session affinity: which backend a client of a service last got,
//! and when, per worker.
//!
//! # Design
//! Kubernetes' `sessionAffinity: ClientIP` keeps a client on one backend for
//! `timeoutSeconds` after its last new connection (kube-proxy refreshes the
//! client's mark on each new connection). Here a worker keeps a fixed table of
//! [`SLOTS`] records (service, client address → backend address, last new
//! connection), allocated with the conntrack table and never grown: a lookup
//! hashes (service, client) and looks at [`WAYS`] consecutive records; an
//! insert takes the key's own record, else a free or expired one, else the
//! least recently used of the ways. So the table costs no allocation per
//! connection and a lookup reads at most two cache lines; a client whose
//! record was pushed out (more than `SLOTS` clients active at once, or a
//! run of collisions) simply picks again by Maglev, as after its timeout.
//!
//! A recorded backend is taken only while it is still one of the service's
//! backends, active and with a weight: a draining, down or removed backend
//! gets no new connection through affinity either.
//!
//! Two workers would keep two tables (a client could get two backends); the
//! tracked networks run on one worker for now (`conntrack/mod.rs`).

use super::services::ServiceId;
use crate::pipeline::conntrack::tuple::mix64;

/// Records per worker: 2 MiB.
pub const SLOTS: usize = 1 << 16;
/// Records a key may sit in: consecutive, from its hash.
pub const WAYS: usize = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Record {
    /// 0: free; else the service id + 1.
    svc: u32,
    client: [u8; 16],
    backend: [u8; 16],
    /// Milliseconds of the worker's conntrack clock.
    last: u64,
}

/// A worker's affinity records (see the module docs).
#[derive(Debug, Default)]
pub struct AffinityTable {
    records: Vec<Record>,
}

fn hash(svc: ServiceId, client: &[u8; 16]) -> usize {
    let w = |i: usize| u64::from_ne_bytes(client[i..i + 8].try_into().unwrap_or([0; 8]));
    let h = mix64(u64::from(svc.0) ^ mix64(w(0) ^ mix64(w(8))));
    (h as usize) & (SLOTS - 1)
}

impl AffinityTable {
    fn ways(&self, at: usize) -> impl Iterator<Item = usize> {
        (0..WAYS).map(move |k| (at + k) & (SLOTS - 1))
    }

    /// Allocates the records (once: the worker does it with the conntrack
    /// table, never a packet).
    pub fn allocate(&mut self) {
        if self.records.is_empty() {
            self.records = vec![Record::default(); SLOTS];
        }
    }

    /// The backend `client` of service `svc` last got, if within
    /// `timeout_ms` of `now`.
    pub fn get(
        &self,
        svc: ServiceId,
        client: &[u8; 16],
        now: u64,
        timeout_ms: u64,
    ) -> Option<[u8; 16]> {
        if self.records.is_empty() {
            return None;
        }
        let key = svc.0.wrapping_add(1);
        self.ways(hash(svc, client))
            .map(|i| &self.records[i])
            .find(|r| r.svc == key && r.client == *client)
            .filter(|r| now.saturating_sub(r.last) < timeout_ms)
            .map(|r| r.backend)
    }

    /// Records that `client` of `svc` got `backend` at `now`.
    pub fn put(
        &mut self,
        svc: ServiceId,
        client: &[u8; 16],
        backend: [u8; 16],
        now: u64,
        timeout_ms: u64,
    ) {
        if self.records.is_empty() {
            return;
        }
        let key = svc.0.wrapping_add(1);
        let at = hash(svc, client);
        let mut pick = None;
        let mut oldest = (u64::MAX, 0);
        for i in self.ways(at) {
            let r = &self.records[i];
            if r.svc == key && r.client == *client {
                pick = Some(i);
                break;
            }
            let free = r.svc == 0 || now.saturating_sub(r.last) >= timeout_ms;
            if free && pick.is_none() {
                pick = Some(i);
            }
            if r.last < oldest.0 {
                oldest = (r.last, i);
            }
        }
        let i = pick.unwrap_or(oldest.1);
        self.records[i] = Record {
            svc: key,
            client: *client,
            backend,
            last: now,
        };
    }

    /// Forgets every record.
    pub fn clear(&mut self) {
        self.records.iter_mut().for_each(|r| *r = Record::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[12..].copy_from_slice(&i.to_be_bytes());
        a
    }

    #[test]
    fn a_record_lives_for_its_timeout_and_is_refreshed_by_a_put() {
        let mut t = AffinityTable::default();
        t.put(ServiceId(0), &addr(1), addr(9), 0, 1000);
        assert_eq!(
            t.get(ServiceId(0), &addr(1), 10, 1000),
            None,
            "not allocated"
        );
        t.allocate();
        t.put(ServiceId(0), &addr(1), addr(9), 0, 1000);
        assert_eq!(t.get(ServiceId(0), &addr(1), 999, 1000), Some(addr(9)));
        assert_eq!(t.get(ServiceId(0), &addr(1), 1000, 1000), None);
        assert_eq!(t.get(ServiceId(1), &addr(1), 10, 1000), None);
        t.put(ServiceId(0), &addr(1), addr(8), 900, 1000);
        assert_eq!(t.get(ServiceId(0), &addr(1), 1800, 1000), Some(addr(8)));
    }

    /// More clients than the table holds: lookups stay bounded, the most
    /// recent clients are found, nothing panics.
    #[test]
    fn a_full_table_keeps_the_recent_clients() {
        let mut t = AffinityTable::default();
        t.allocate();
        let n = (SLOTS * 2) as u32;
        for i in 0..n {
            t.put(ServiceId(3), &addr(i), addr(i ^ 1), u64::from(i), u64::MAX);
        }
        let recent = (n - 1000..n)
            .filter(|&i| t.get(ServiceId(3), &addr(i), u64::from(n), u64::MAX) == Some(addr(i ^ 1)))
            .count();
        assert!(recent > 990, "{recent} of the last 1000 clients found");
    }
}
