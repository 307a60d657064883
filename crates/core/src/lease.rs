//! Partitions and leases: how several runtimes share one component's instances without two of
//! them ever writing the same instance.
//!
//! A component's instances are split into a fixed number of partitions ([`partition_of`], fixed at
//! an instance's creation: it depends only on the id and the component's partition count, which
//! the store keeps from the first runtime that asked). A runtime processes an instance only while
//! it holds the lease of the instance's partition: a row (component, partition, owner, epoch,
//! expiry) in the shared store, timed by the store's clock so that the runtimes' clocks do not
//! matter. Taking a lease (free, expired, or released) always raises its epoch.
//!
//! Fencing: every commit names the epochs its writes rely on ([`Fence`], in
//! `CommitBatch::fences`), and the store checks them in the same transaction as the writes. A
//! runtime that lost a lease while paused, partitioned from the store or slow gets
//! `store::Error::Fenced` and nothing of its batch is written: the new owner, which loaded the
//! partition after raising the epoch, can never be overwritten by the old one.

use crate::instance::{InstanceId, Millis};
use crate::mix::{GOLDEN_GAMMA, mix64};
use crate::store::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A partition number, from 0 to the component's partition count - 1.
pub type Partition = u32;

/// Partitions of a component when its runtimes do not ask for another count.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// Most partitions a component may have (one lease row each, renewed by its owner).
pub const MAX_PARTITIONS: u32 = 4096;

/// Longest a runtime's name may be (it is stored in every lease it holds).
pub const MAX_OWNER_LEN: usize = 200;

/// The partition of an instance among `partitions` (at least 1). Depends only on the id's 128
/// bits (mixed, so ids drawn close in time spread evenly), never on the runtime or its shards.
pub fn partition_of(id: InstanceId, partitions: u32) -> Partition {
    let bits = id.0.as_u128();
    let mixed = mix64((bits >> 64) as u64 ^ (bits as u64).rotate_left(32));
    (mixed % u64::from(partitions.max(1))) as Partition
}

/// The id of the copy of message `id` sent to one partition of a component shared by several
/// runtimes (a delivery by selector or a broadcast reaches every partition, each copy a message
/// of its own): the same for every resend, distinct per partition, and keeping the UUID v7 time
/// prefix of `id` (48 bits), so that inbox entries of copies age like the message's.
pub fn partition_copy_id(
    id: crate::message::MessageId,
    partition: Partition,
) -> crate::message::MessageId {
    let bits = id.0.as_u128();
    let time = bits & (0xffff_ffff_ffff_u128 << 80);
    let mixed_high = mix64((bits >> 64) as u64 ^ u64::from(partition).wrapping_add(GOLDEN_GAMMA));
    let mixed_low = mix64(bits as u64 ^ mixed_high);
    let rest =
        ((u128::from(mixed_high) << 64) | u128::from(mixed_low)) & !(0xffff_ffff_ffff_u128 << 80);
    // Version 7 and the RFC 4122 variant, as the ids the runtime draws.
    let uuid = (time | rest) & !(0xf_u128 << 76) & !(0b11_u128 << 62)
        | (0x7_u128 << 76)
        | (0b10_u128 << 62);
    crate::message::MessageId(uuid::Uuid::from_u128(uuid))
}

/// One partition's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The component.
    pub component: String,
    /// The partition.
    pub partition: Partition,
    /// The runtime that holds (or last held) it.
    pub owner: String,
    /// Raised each time the lease is taken; commits name it.
    pub epoch: u64,
    /// When it ends unless renewed, by the store's clock (ms since epoch); 0 once released.
    pub expires_at: Millis,
}

impl Lease {
    /// The fence a commit relying on this lease carries.
    pub fn fence(&self) -> Fence {
        Fence { component: self.component.clone(), partition: self.partition, epoch: self.epoch }
    }

    /// Held by someone at `now` (store time).
    pub fn is_live(&self, now: Millis) -> bool {
        self.expires_at > now
    }
}

/// What a commit relies on: the lease of (component, partition) still has this epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fence {
    /// The component.
    pub component: String,
    /// The partition.
    pub partition: Partition,
    /// The epoch the writer holds.
    pub epoch: u64,
}

/// Every lease of a component as one read saw them, with the store's time of that read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTable {
    /// The component's partition count.
    pub partitions: u32,
    /// The leases ever taken, by partition (a partition never leased has none).
    pub leases: Vec<Lease>,
    /// The runtimes that said they host the component (`LeaseStore::join`): name → until when
    /// (store clock), by name. A runtime that holds no partition yet is counted through it.
    pub members: Vec<(String, Millis)>,
    /// The store's clock when it read them.
    pub now: Millis,
}

/// The outcome of renewing one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours, now until this time (store clock).
    Renewed(Millis),
    /// Taken by another epoch (or never ours): the partition must be dropped at once.
    Lost,
}

/// Leases in a store shared by several runtimes (PostgreSQL, Redis; the memory store for tests in
/// one process). A store without leases (SQLite: one host) does not implement it.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// The partition count of `component`: the stored one, or `wanted` stored now when the
    /// component has none yet. The count never changes once stored (an instance's partition
    /// depends on it); the caller compares it with what it wanted.
    async fn partitions(&self, component: &str, wanted: u32) -> Result<u32>;

    /// Every lease and member of `component` and the store's time.
    async fn lease_table(&self, component: &str) -> Result<LeaseTable>;

    /// Says that `owner` hosts `component` until now + `ttl` (store clock), so the others make
    /// room for it; a ttl of zero says it left.
    async fn join(&self, component: &str, owner: &str, ttl: Duration) -> Result<()>;

    /// Takes the partition for `owner` for `ttl` when its lease is free, released or expired
    /// (also when `owner` held it before: a restarted runtime gets a new epoch), raising the
    /// epoch; `None` when another owner's lease is live. Two runtimes racing for one partition:
    /// exactly one gets it.
    async fn acquire(
        &self,
        component: &str,
        partition: Partition,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>>;

    /// Extends each lease `owner` holds at the fence's epoch to now + `ttl` (even if it expired
    /// meanwhile, as long as nobody took it); one outcome per fence, in order.
    async fn renew(&self, owner: &str, fences: &[Fence], ttl: Duration) -> Result<Vec<Renewal>>;

    /// Gives the lease up (expiry set to 0) if it still has the fence's epoch; the next taker
    /// need not wait for the expiry. Releasing a lease lost already does nothing.
    async fn release(&self, fence: &Fence) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_ids_drawn_in_one_millisecond_evenly() {
        let mut counts = [0u32; 16];
        let base = uuid::Uuid::now_v7().as_u128() & !0xffff_ffff_ffff;
        for n in 0..16_000u128 {
            counts[partition_of(InstanceId(uuid::Uuid::from_u128(base | n)), 16) as usize] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn partition_copies_have_stable_distinct_v7_ids_with_the_message_time() {
        let id = crate::message::MessageId(uuid::Uuid::now_v7());
        let copies: Vec<_> = (0..16).map(|p| partition_copy_id(id, p)).collect();
        let distinct: std::collections::BTreeSet<_> = copies.iter().collect();
        assert_eq!(distinct.len(), 16);
        assert!(!copies.contains(&id));
        assert_eq!(copies[3], partition_copy_id(id, 3), "the same on every resend");
        for copy in &copies {
            assert_eq!(copy.0.get_version_num(), 7);
            assert_eq!(copy.0.as_u128() >> 80, id.0.as_u128() >> 80, "same time prefix");
        }
    }

    #[test]
    fn a_partition_depends_on_the_id_and_count_only() {
        let id = InstanceId(uuid::Uuid::from_u128(0x0190_c2a0_0000_7000_8000_0000_0000_0002));
        assert_eq!(partition_of(id, 16), partition_of(id, 16));
        assert!(partition_of(id, 16) < 16);
        assert_eq!(partition_of(id, 1), 0);
        assert_eq!(partition_of(id, 0), 0, "a count of 0 is read as 1");
    }
}
