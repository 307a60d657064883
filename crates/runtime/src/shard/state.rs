//! The data a shard owns: live instances in a slab, the id → slot map, the property index and
//! the timer queue. Every structure here is updated together by `Instances`, so the index and
//! the timers always describe the instances as they are.

use crate::registry::ComponentIdx;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::BTreeSet;
use std::sync::Arc;
use xcomponent_core::instance::{
    EventId, Instance, InstanceId, MachineIdx, Millis, PendingTimer, TransitionIdx,
};
use xcomponent_core::matching::IndexKey;
use xcomponent_core::path::lookup_in_map;

/// A live instance and what the shard keeps beside it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub component: ComponentIdx,
    /// Correlation id of the instance's creation (carried by its timer events).
    pub correlation: EventId,
    pub instance: Instance,
}

/// Key of the property index: (component, machine, path number, hash of the value's
/// `IndexKey`). Hash collisions only add candidates: every candidate is checked against the
/// filters before an event is delivered, so the index is a fast path, never a source of truth.
type IndexEntryKey = (ComponentIdx, MachineIdx, u16, u64);

/// Live instances of one shard.
#[derive(Debug, Default)]
pub(crate) struct Instances {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: FxHashMap<InstanceId, u32>,
    index: FxHashMap<IndexEntryKey, SmallVec<[u32; 2]>>,
    timers: BTreeSet<(Millis, InstanceId, TransitionIdx)>,
    warm: u32,
}

/// The hashed indexed values of one instance, one per indexed path (`None`: not indexable).
pub(crate) type IndexedValues = SmallVec<[Option<u64>; 2]>;

impl Instances {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn slot_of(&self, id: &InstanceId) -> Option<u32> {
        self.ids.get(id).copied()
    }

    pub fn get(&self, slot: u32) -> Option<&Slot> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub fn by_id(&self, id: &InstanceId) -> Option<&Slot> {
        self.slot_of(id).and_then(|slot| self.get(slot))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| slot.as_ref().map(|slot| (index as u32, slot)))
    }

    /// Adds an instance, indexing `paths` and arming its timers.
    pub fn insert(&mut self, slot: Slot, paths: &[Arc<str>]) -> u32 {
        let id = slot.instance.id;
        let component = slot.component;
        let machine = slot.instance.machine;
        for timer in &slot.instance.timers {
            self.timers.insert((timer.deadline, id, timer.transition));
        }
        let values = indexed_values(&slot.instance, paths);
        let position = match self.free.pop() {
            Some(position) => {
                self.slots[position as usize] = Some(slot);
                position
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(id, position);
        for (path, key) in values.into_iter().enumerate() {
            if let Some(key) = key {
                self.index
                    .entry((component, machine, path as u16, key))
                    .or_default()
                    .push(position);
            }
        }
        position
    }

    /// Removes an instance with its index entries and timers.
    pub fn remove(&mut self, id: &InstanceId, paths: &[Arc<str>]) -> Option<Slot> {
        let position = self.ids.remove(id)?;
        let slot = self.slots.get_mut(position as usize)?.take()?;
        for timer in &slot.instance.timers {
            self.timers.remove(&(timer.deadline, *id, timer.transition));
        }
        let values = indexed_values(&slot.instance, paths);
        for (path, key) in values.into_iter().enumerate() {
            if let Some(key) = key {
                self.unindex((slot.component, slot.instance.machine, path as u16, key), position);
            }
        }
        self.free.push(position);
        Some(slot)
    }

    fn unindex(&mut self, key: IndexEntryKey, position: u32) {
        if let Some(positions) = self.index.get_mut(&key) {
            positions.retain(|candidate| *candidate != position);
            if positions.is_empty() {
                self.index.remove(&key);
            }
        }
    }

    /// After an instance changed: moves its index entries from `before` and its timers from
    /// `timers_before` to what it holds now.
    pub fn reconcile(
        &mut self,
        position: u32,
        before: IndexedValues,
        timers_before: &[PendingTimer],
        paths: &[Arc<str>],
    ) {
        let Some(slot) = self.slots.get(position as usize).and_then(Option::as_ref) else { return };
        let (id, component, machine) = (slot.instance.id, slot.component, slot.instance.machine);
        if timers_before != slot.instance.timers.as_slice() {
            let now_timers: SmallVec<[PendingTimer; 2]> =
                slot.instance.timers.iter().copied().collect();
            for timer in timers_before {
                self.timers.remove(&(timer.deadline, id, timer.transition));
            }
            for timer in now_timers {
                self.timers.insert((timer.deadline, id, timer.transition));
            }
        }
        if paths.is_empty() {
            return;
        }
        let after = indexed_values(&slot.instance, paths);
        for (path, (old, new)) in before.into_iter().zip(after).enumerate() {
            if old == new {
                continue;
            }
            if let Some(old) = old {
                self.unindex((component, machine, path as u16, old), position);
            }
            if let Some(new) = new {
                self.index
                    .entry((component, machine, path as u16, new))
                    .or_default()
                    .push(position);
            }
        }
    }

    /// Candidate slots whose indexed path number `path` may hold a value `===` to `key` (a
    /// superset: the index is never stale, but hashes may collide).
    pub fn lookup(
        &self,
        component: ComponentIdx,
        machine: MachineIdx,
        path: u16,
        key: &IndexKey,
    ) -> &[u32] {
        self.index
            .get(&(component, machine, path, hash_key(key)))
            .map(|positions| positions.as_slice())
            .unwrap_or(&[])
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers.first().map(|(deadline, _, _)| *deadline)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(InstanceId, TransitionIdx)> {
        let &(deadline, id, transition) = self.timers.first()?;
        if deadline > now {
            return None;
        }
        self.timers.pop_first();
        Some((id, transition))
    }

    /// Keeps the result of a read done only to bring slots into the cache (so it is not optimized
    /// away).
    pub fn note_warm(&mut self, value: u32) {
        self.warm = self.warm.wrapping_add(value);
    }

    /// Number of armed timers.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}

/// The hashed index keys of an instance for `paths` (empty when the machine has none).
pub(crate) fn indexed_values(instance: &Instance, paths: &[Arc<str>]) -> IndexedValues {
    paths
        .iter()
        .map(|path| {
            lookup_in_map(&instance.context, path).and_then(IndexKey::of).map(|key| hash_key(&key))
        })
        .collect()
}

fn hash_key(key: &IndexKey) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(key)
}
