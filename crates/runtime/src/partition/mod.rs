//! Components shared by several runtimes: partition ownership (`keeper`), the partition counts of
//! components hosted elsewhere (`directory`), and what a runtime does when it gains or loses a
//! partition (`takeover`).
//!
//! A runtime started with `RuntimeBuilder::replicas` hosts its components' instances by
//! partition (`xcomponent_core::lease`): it holds the instances of the partitions whose lease it
//! has, consumes their queues (`partition_queue`), names their epochs in every commit (fences),
//! and sends everything else through the bus to the partition's queue, where its owner takes it:
//! an event or a creation for an instance of a partition it does not own, and every delivery by
//! selector (a copy per partition, `partition_copy_id`).

mod directory;
mod keeper;
pub(crate) mod takeover;

pub use keeper::{
    ComponentOwnership, DEFAULT_LEASE_TTL, LeaseConfig, LeaseError, LeaseKeeper, MIN_LEASE_TTL,
    Ownership, RENEWALS_PER_TTL,
};

pub(crate) use directory::Directory;

use crate::error::RuntimeError;
use crate::ids::DrawId;
use crate::registry::ComponentIdx;
use crate::shared::Shared;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, watch};
use xcomponent_core::definition::EntryMode;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::instance::MachineIdx;
use xcomponent_core::lease::{Fence, Partition, partition_of};
use xcomponent_core::message::{Envelope, MessageBody};

/// Ids drawn at most to find one in an owned partition (with 1 of 4,096 partitions owned, the
/// chance of missing is below 1%).
const MAX_ID_DRAWS: usize = 20_000;

/// The partition a copy of a message is for: its component's count and the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionTag {
    /// The component's partition count.
    pub partitions: u32,
    /// The partition.
    pub partition: Partition,
}

impl PartitionTag {
    /// Whether `instance` is in this partition.
    pub fn holds(&self, instance: &InstanceId) -> bool {
        partition_of(*instance, self.partitions) == self.partition
    }
}

/// The shared-component side of a running runtime.
pub(crate) struct Partitions {
    /// What this runtime owns, as its keeper last published (the epochs commits carry).
    pub ownership: watch::Receiver<Ownership>,
    /// The owned partitions whose instances are loaded (`takeover`): only these are processed
    /// here; messages for a partition acquired but not yet loaded go through its queue, which
    /// is consumed once it is.
    pub ready: RwLock<BTreeSet<(String, Partition)>>,
    /// Woken by a shard whose commit was fenced: the keeper runs a round at once.
    pub fenced: Arc<Notify>,
    /// The partitions whose commits were fenced since the takeover last looked, with the
    /// highest epoch refused (one entry per partition: bounded by the partition count).
    fenced_at: Mutex<BTreeMap<(String, Partition), u64>>,
    /// Woken with each entry of `fenced_at`: the takeover looks at once.
    pub resync: Notify,
}

/// Every (component, partition) owned, with the epoch commits must carry.
pub(crate) fn owned_epochs(ownership: &Ownership) -> BTreeMap<(String, Partition), u64> {
    ownership
        .iter()
        .flat_map(|(component, owned)| {
            owned.owned.iter().map(|(partition, epoch)| ((component.clone(), *partition), *epoch))
        })
        .collect()
}

impl Partitions {
    /// The state of a runtime that loaded `initial` at start.
    pub fn new(ownership: watch::Receiver<Ownership>) -> Partitions {
        let ready = owned_epochs(&ownership.borrow()).into_keys().collect();
        Partitions {
            ownership,
            ready: RwLock::new(ready),
            fenced: Arc::new(Notify::new()),
            fenced_at: Mutex::new(BTreeMap::new()),
            resync: Notify::new(),
        }
    }

    /// A commit of the partition was fenced at `epoch`: its instances were dropped and it is
    /// not processed any more; the keeper and the takeover are told.
    pub fn record_fenced(&self, key: (String, Partition), epoch: u64) {
        {
            let mut fenced_at =
                self.fenced_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = fenced_at.entry(key).or_insert(epoch);
            *entry = (*entry).max(epoch);
        }
        self.fenced.notify_one();
        self.resync.notify_one();
    }

    /// The partitions fenced since the last call, with the epoch refused.
    pub fn take_fenced(&self) -> BTreeMap<(String, Partition), u64> {
        std::mem::take(&mut *self.fenced_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Marks partitions loaded (or no longer owned).
    pub fn set_ready(&self, key: (String, Partition), ready: bool) {
        if let Ok(mut set) = self.ready.write() {
            if ready {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
    }

    pub fn is_ready(&self, component: &str, partition: Partition) -> bool {
        self.ready.read().is_ok_and(|set| set.contains(&(component.to_owned(), partition)))
    }
}

impl Shared {
    /// The partition count of a hosted component shared with other runtimes.
    pub fn shared_partitions(&self, component: &str) -> Option<u32> {
        let partitions = self.partitions.as_ref()?;
        let ownership = partitions.ownership.borrow();
        ownership.get(component).map(|owned| owned.partitions)
    }

    /// Whether this runtime holds `instance` of `component`: always for a component that is not
    /// shared, else when it owns the instance's partition.
    pub fn owns(&self, component: &str, instance: &InstanceId) -> bool {
        let Some(partitions) = &self.partitions else { return true };
        let count = partitions.ownership.borrow().get(component).map(|owned| owned.partitions);
        match count {
            Some(count) => partitions.is_ready(component, partition_of(*instance, count)),
            None => true,
        }
    }

    /// The fence a commit writing `instance` of `component` must carry (for a shared component):
    /// the epoch of its partition's lease, or epoch 0 (always refused) when this runtime no
    /// longer owns it.
    pub fn fence_of(&self, component: &str, instance: &InstanceId) -> Option<Fence> {
        let partitions = self.partitions.as_ref()?;
        let ownership = partitions.ownership.borrow();
        let owned = ownership.get(component)?;
        let partition = partition_of(*instance, owned.partitions);
        let epoch = owned.owned.get(&partition).copied().unwrap_or(0);
        Some(Fence { component: component.to_owned(), partition, epoch })
    }

    /// A fresh id for an instance of `machine` created here. For a shared component: an id in a
    /// partition this runtime owns (drawn again until one falls in; about `partitions / owned`
    /// draws), and for an entry point or a singleton entry machine an id in partition 0, whose
    /// owner alone creates it, so that the cluster has one.
    pub fn draw_id_for(
        &self,
        component: ComponentIdx,
        machine: MachineIdx,
        entry_point: bool,
    ) -> Result<InstanceId, RuntimeError> {
        let definition = self.registry.definition(component);
        let Some(partitions) = self.shared_partitions(&definition.name) else {
            return Ok(InstanceId::draw());
        };
        let singleton = entry_point
            || (definition.entry_mode == EntryMode::Singleton
                && definition.entry_machine == Some(machine));
        let owned: Vec<Partition> = match self.partitions.as_ref() {
            Some(state) => {
                (0..partitions).filter(|p| state.is_ready(&definition.name, *p)).collect()
            }
            None => Vec::new(),
        };
        let wanted = |partition: Partition| {
            if singleton { partition == 0 } else { owned.contains(&partition) }
        };
        for _ in 0..MAX_ID_DRAWS {
            let id = InstanceId::draw();
            if wanted(partition_of(id, partitions)) {
                return Ok(id);
            }
        }
        Err(RuntimeError::NotOwner {
            component: definition.name.to_string(),
            partition: if singleton { 0 } else { owned.first().copied().unwrap_or(0) },
        })
    }

    /// `Ok` when this runtime holds `instance` of `component` (see `owns`), else the error that
    /// names the partition.
    pub fn check_owner(
        &self,
        component: ComponentIdx,
        instance: &InstanceId,
    ) -> Result<(), RuntimeError> {
        let name = &self.registry.definition(component).name;
        match self.shared_partitions(name) {
            Some(partitions) if !self.owns(name, instance) => Err(RuntimeError::NotOwner {
                component: name.to_string(),
                partition: partition_of(*instance, partitions),
            }),
            _ => Ok(()),
        }
    }

    /// Whether `partition` of hosted component `component` is owned and loaded here (always
    /// true for a component that is not shared).
    pub fn is_ready_partition(&self, component: ComponentIdx, partition: Partition) -> bool {
        let name = &self.registry.definition(component).name;
        match (&self.partitions, self.shared_partitions(name)) {
            (Some(state), Some(_)) => state.is_ready(name, partition),
            _ => true,
        }
    }

    /// Whether `instance` may belong to a partition of a shared component that is not loaded
    /// here (an instance that is not live here for that reason, not because it does not exist).
    pub fn in_partition_elsewhere(&self, instance: &InstanceId) -> bool {
        let Some(state) = &self.partitions else { return false };
        let ownership = state.ownership.borrow();
        self.registry.components().iter().any(|definition| {
            ownership.get(&*definition.name).is_some_and(|owned| {
                !state.is_ready(&definition.name, partition_of(*instance, owned.partitions))
            })
        })
    }

    /// Hands a delivery from the bus back to the broker (its held acknowledgements dropped):
    /// its partition's queue consumer here is stopped, which returns it to the queue.
    pub fn hand_back(&self, message: xcomponent_core::message::MessageId) {
        if let Some(remote) = &self.remote {
            remote.release(message);
        }
    }

    /// Whether a stored envelope leaves through the bus: its component is hosted elsewhere, or
    /// it is shared and the envelope is for a partition this runtime does not own, or it is a
    /// delivery by selector (which reaches every partition through their queues).
    pub fn goes_remote(&self, envelope: &Envelope) -> bool {
        if self.remote.is_none() {
            return false;
        }
        if self.registry.index_of(&envelope.component).is_none() {
            return true;
        }
        if self.shared_partitions(&envelope.component).is_none() {
            return false;
        }
        match &envelope.body {
            MessageBody::Send { instance_id, .. } | MessageBody::Create { instance_id, .. } => {
                !self.owns(&envelope.component, instance_id)
            }
            MessageBody::Deliver { .. } | MessageBody::Broadcast { .. } => true,
            MessageBody::HookCall { .. } => false,
        }
    }
}

impl crate::handle::RuntimeHandle {
    /// The partitions of shared components this runtime owns, with their lease epochs (`None`
    /// when its components are not shared).
    pub fn ownership(&self) -> Option<Ownership> {
        self.shared.partitions.as_ref().map(|state| state.ownership.borrow().clone())
    }
}
