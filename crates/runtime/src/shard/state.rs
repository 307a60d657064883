//! The data a shard owns: live instances in a slab, the id → slot map, the property index and
//! the timer queue. Every structure here is updated together by `Instances`, so the index and
//! the timers always describe the instances as they are.
//!
//! The data of an idle instance is kept packed, beside the slots (`Instances::packed`, so that
//! instances without data pay nothing for it): `pack_idle`, run once a batch is settled, packs
//! every instance the batch touched, and `get_mut` unpacks an instance before it is changed.
//! Readers that only look go through `data`, `lookup_data` and `filters_hold`, which read either
//! form. A slot outside `Instances` (inserted, removed, kept for undo) is never packed.

use super::packed::{Keys, Packed};
use crate::registry::ComponentIdx;
use rustc_hash::FxHashMap;
use serde_json::Value;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use xcomponent_core::instance::{
    Context, EventId, Instance, InstanceId, MachineIdx, Millis, PendingTimer, TransitionIdx,
};
use xcomponent_core::matching::{IndexKey, PropertyFilter, compare};
use xcomponent_core::path::lookup_in_map;

/// Capacity kept by the list of open slots between batches (a restore may fill it with millions).
const OPEN_CAPACITY_KEPT: usize = 4_096;

/// A live instance and what the shard keeps beside it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub component: ComponentIdx,
    /// Correlation id of the instance's creation (carried by its timer events).
    pub correlation: EventId,
    /// The instance. While its data is packed, `instance.context` is empty: the data is read
    /// through `Instances::data` or `Instances::lookup_data`, and `Instances::get_mut` unpacks it
    /// before anything changes it.
    pub instance: Instance,
    /// Whether the data is in `Instances::packed` (private: only `Instances` packs and unpacks).
    packed: bool,
}

impl Slot {
    /// A slot whose data is not packed.
    pub fn new(component: ComponentIdx, correlation: EventId, instance: Instance) -> Slot {
        Slot { component, correlation, instance, packed: false }
    }
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
    /// The packed data of idle instances.
    packed: FxHashMap<InstanceId, Packed>,
    /// The keys of the packed data.
    keys: Keys,
    /// What `instance.context` holds while the data is packed.
    empty: Arc<Context>,
    /// Slots unpacked, inserted, handed out for change with data, or given new data
    /// (`reconcile`) since the last `pack_idle` (a slot may be listed twice, or be gone).
    open: Vec<u32>,
}

/// The hashed indexed values of one instance, one per indexed path (`None`: not indexable).
type IndexedValues = SmallVec<[Option<u64>; 2]>;

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

    /// The slot, its data unpacked (it is packed again by the next `pack_idle`). A slot with
    /// empty data is not listed for packing: `reconcile` lists it if a change gives it data.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        let entry = self.slots.get_mut(slot as usize)?.as_mut()?;
        if entry.packed || !entry.instance.context.is_empty() {
            unpack(entry, &mut self.packed, &self.keys);
            self.open.push(slot);
        }
        Some(entry)
    }

    /// Packs the data of every slot opened since the last call (empty data stays unpacked: it
    /// is one shared allocation). Called once a batch is settled, when nothing else holds the
    /// batch's copies of the data any more.
    pub fn pack_idle(&mut self) {
        for position in self.open.drain(..) {
            let Some(Some(slot)) = self.slots.get_mut(position as usize) else { continue };
            if slot.packed || slot.instance.context.is_empty() {
                continue;
            }
            if let Some(packed) = Packed::pack(&slot.instance.context, &mut self.keys) {
                self.packed.insert(slot.instance.id, packed);
                slot.packed = true;
                slot.instance.context = self.empty.clone();
            }
        }
        self.open.shrink_to(OPEN_CAPACITY_KEPT);
    }

    /// The data of an instance, whichever form it is kept in.
    pub fn data(&self, slot: &Slot) -> Arc<Context> {
        match self.packed_data(slot) {
            Some(packed) => Arc::new(packed.unpack(&self.keys)),
            None => slot.instance.context.clone(),
        }
    }

    fn packed_data(&self, slot: &Slot) -> Option<&Packed> {
        if !slot.packed {
            return None;
        }
        let packed = self.packed.get(&slot.instance.id);
        debug_assert!(packed.is_some(), "a packed slot has its data");
        packed
    }

    /// The value at the dot path `path` of an instance's data.
    pub fn lookup_data<'a>(&self, slot: &'a Slot, path: &str) -> Option<Cow<'a, Value>> {
        match self.packed_data(slot) {
            Some(packed) => packed.lookup(path, &self.keys).map(Cow::Owned),
            None => lookup_in_map(&slot.instance.context, path).map(Cow::Borrowed),
        }
    }

    /// Whether an instance's data passes every filter (`matching::filters_hold` on either form).
    pub fn filters_hold(&self, slot: &Slot, filters: &[PropertyFilter]) -> bool {
        filters.iter().all(|filter| {
            let value = self.lookup_data(slot, &filter.property);
            compare(value.as_deref(), filter.operator, Some(&filter.value))
        })
    }

    /// The hashed index keys of a slot for `paths`, whichever form its data is kept in.
    fn values_of(&self, slot: &Slot, paths: &[Arc<str>]) -> IndexedValues {
        if !slot.packed {
            return indexed_values(&slot.instance.context, paths);
        }
        paths
            .iter()
            .map(|path| {
                let value = self.lookup_data(slot, path)?;
                IndexKey::of(&value).map(|key| hash_key(&key))
            })
            .collect()
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
        debug_assert!(!slot.packed, "a slot is inserted with its data");
        let id = slot.instance.id;
        let component = slot.component;
        let machine = slot.instance.machine;
        for timer in &slot.instance.timers {
            self.timers.insert((timer.deadline, id, timer.transition));
        }
        let values = self.values_of(&slot, paths);
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
        self.open.push(position);
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
        let mut slot = self.slots.get_mut(position as usize)?.take()?;
        unpack(&mut slot, &mut self.packed, &self.keys);
        for timer in &slot.instance.timers {
            self.timers.remove(&(timer.deadline, *id, timer.transition));
        }
        let values = self.values_of(&slot, paths);
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

    /// After an instance changed: moves its timers from `timers_before` to what it holds now
    /// and, when its data changed (`data_before`, `None` otherwise), its index entries, and
    /// lists it for the next `pack_idle`.
    pub fn reconcile(
        &mut self,
        position: u32,
        data_before: Option<&Context>,
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
        let Some(data_before) = data_before else { return };
        self.open.push(position);
        if paths.is_empty() {
            return;
        }
        let before = indexed_values(data_before, paths);
        let after = self.values_of(slot, paths);
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

/// Puts a slot's packed data back in its instance.
fn unpack(slot: &mut Slot, packed: &mut FxHashMap<InstanceId, Packed>, keys: &Keys) {
    if !slot.packed {
        return;
    }
    slot.packed = false;
    let data = packed.remove(&slot.instance.id);
    debug_assert!(data.is_some(), "a packed slot has its data");
    if let Some(data) = data {
        slot.instance.context = Arc::new(data.unpack(keys));
    }
}

/// The hashed index keys of instance data for `paths` (empty when the machine has none).
fn indexed_values(data: &Context, paths: &[Arc<str>]) -> IndexedValues {
    paths
        .iter()
        .map(|path| lookup_in_map(data, path).and_then(IndexKey::of).map(|key| hash_key(&key)))
        .collect()
}

fn hash_key(key: &IndexKey) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use xcomponent_core::instance::Status;

    fn slot(id: u128, data: Context) -> Slot {
        let instance = Instance {
            id: InstanceId(uuid::Uuid::from_u128(id)),
            machine: 0,
            state: 0,
            status: Status::Active,
            entry_point: false,
            seq: 0,
            created_at: 0,
            updated_at: 0,
            context: Arc::new(data),
            parent: None,
            timers: Default::default(),
        };
        Slot::new(0, EventId(uuid::Uuid::from_u128(id)), instance)
    }

    fn order() -> Context {
        match json!({"orderId": "ORD-1", "amount": 12.5}) {
            Value::Object(map) => map,
            _ => Context::new(),
        }
    }

    #[test]
    fn data_given_by_a_step_is_packed_once_the_change_is_reconciled() {
        let mut instances = Instances::default();
        let position = instances.insert(slot(1, Context::new()), &[]);
        instances.pack_idle();
        let Some(opened) = instances.get_mut(position) else { panic!("slot {position}") };
        assert!(!opened.packed, "empty data is never packed");
        opened.instance.context = Arc::new(order());
        // Handed out with empty data: not listed until the change is reconciled.
        instances.pack_idle();
        assert!(instances.get(position).is_some_and(|slot| !slot.packed));
        instances.reconcile(position, Some(&Context::new()), &[], &[]);
        instances.pack_idle();
        let Some(packed) = instances.get(position) else { panic!("slot {position}") };
        assert!(packed.packed && packed.instance.context.is_empty());
        assert_eq!(*instances.data(packed), order(), "the packed data reads back whole");
    }

    #[test]
    fn a_slot_with_data_handed_out_for_change_is_packed_again() {
        let mut instances = Instances::default();
        let position = instances.insert(slot(2, order()), &[]);
        instances.pack_idle();
        assert!(instances.get(position).is_some_and(|slot| slot.packed));
        let Some(opened) = instances.get_mut(position) else { panic!("slot {position}") };
        assert_eq!(*opened.instance.context, order(), "unpacked before any change");
        instances.pack_idle();
        assert!(instances.get(position).is_some_and(|slot| slot.packed));
    }
}
