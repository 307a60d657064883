//! A shard's side of partition ownership (components shared by several runtimes): dropping the
//! instances of a partition this runtime no longer owns, after a handover or when a commit was
//! fenced (another runtime took the partition). The store keeps them; their new owner loads them.

use super::ShardWork;
use crate::protocol::ShardMsg;
use crate::registry::ComponentIdx;
use crate::shared::Shared;
use xcomponent_core::definition::EntryMode;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::lease::{Partition, partition_of};

impl ShardWork {
    /// Removes from memory every instance of `component` in `partition` (of `partitions`);
    /// returns how many.
    pub(super) fn evict_partition(
        &mut self,
        shared: &Shared,
        component: ComponentIdx,
        partitions: u32,
        partition: Partition,
    ) -> usize {
        let ids: Vec<InstanceId> = self
            .instances
            .iter()
            .filter(|(_, slot)| {
                slot.component == component
                    && partition_of(slot.instance.id, partitions) == partition
            })
            .map(|(_, slot)| slot.instance.id)
            .collect();
        let definition = shared.registry.definition(component);
        for id in &ids {
            let Some(machine) = self.instances.by_id(id).map(|slot| slot.instance.machine) else {
                continue;
            };
            let paths = shared.registry.indexed_paths(component, machine);
            self.instances.remove(id, paths);
            if definition.entry_mode == EntryMode::Singleton
                && definition.entry_machine == Some(machine)
            {
                shared.release_singleton(component, *id);
            }
        }
        ids.len()
    }

    /// Whether a routed message was for an instance of `partition` of `component` (a shared
    /// component): an event or a creation by its target, a delivery by selector by the
    /// partition its copy was for.
    pub(super) fn targets_partition(
        &self,
        shared: &Shared,
        message: &ShardMsg,
        component: &str,
        partition: Partition,
    ) -> bool {
        let Some(partitions) = shared.shared_partitions(component) else { return false };
        let in_partition = |id: &InstanceId| partition_of(*id, partitions) == partition;
        let is_component =
            |index: ComponentIdx| &*shared.registry.definition(index).name == component;
        let instance = |id: &InstanceId| {
            self.instances.by_id(id).is_none_or(|slot| is_component(slot.component))
                && in_partition(id)
        };
        match message {
            ShardMsg::Send(send) => instance(&send.target),
            ShardMsg::HookResult(result) => instance(&result.target),
            ShardMsg::Create(create) => is_component(create.component) && in_partition(&create.id),
            ShardMsg::Deliver(deliver) => {
                is_component(deliver.component)
                    && deliver
                        .origin
                        .as_ref()
                        .and_then(|origin| origin.partition)
                        .is_some_and(|tag| tag.partition == partition)
            }
            _ => false,
        }
    }

    /// After a commit refused as fenced at `epoch`: the partition belongs to another runtime
    /// now, or to this one under a newer epoch (its lease was lost and taken again, maybe after
    /// another runtime held it). Its instances are dropped from this shard, the lease keeper is
    /// told to look at once, and the takeover to load the partition again if this runtime owns
    /// it under another epoch.
    pub(super) fn fenced(
        &mut self,
        shared: &Shared,
        component: &str,
        partition: Partition,
        epoch: u64,
    ) {
        let (Some(index), Some(partitions)) =
            (shared.registry.index_of(component), shared.shared_partitions(component))
        else {
            return;
        };
        // Not processed here any more, at once: new deliveries for it go back to the broker and
        // what the shards produce for it goes to its queue (the takeover stops its consumer).
        if let Some(state) = &shared.partitions {
            state.set_ready((component.to_owned(), partition), false);
        }
        let dropped = self.evict_partition(shared, index, partitions, partition);
        tracing::warn!(
            shard = self.index,
            component,
            partition,
            dropped,
            "Commit fenced: another runtime owns the partition now; its instances were dropped here."
        );
        if let Some(state) = &shared.partitions {
            state.record_fenced((component.to_owned(), partition), epoch);
        }
    }
}
