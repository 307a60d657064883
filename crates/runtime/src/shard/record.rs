//! The stored form of what a shard does: a `StoredEvent` per transition (with what it changed in
//! the instance data, not the whole data), snapshots every `snapshot_interval` events and at
//! final/error (with the whole data), and `InstanceRecord`s.

use super::state::Slot;
use crate::protocol::Trace;
use crate::shared::Shared;
use std::sync::Arc;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{Context, EventId, Instance, Millis, StateIdx, Status};
use xcomponent_core::store::{CommitBatch, DataChanges, InstanceRecord, StoredEvent, TimerRecord};

#[allow(clippy::too_many_arguments)]
pub(crate) fn record_transition(
    commit: &mut CommitBatch,
    shared: &Shared,
    definition: &Definition,
    slot: &Slot,
    event: &Arc<str>,
    payload: &Context,
    trace: &Trace,
    correlation: EventId,
    event_id: EventId,
    state_before: StateIdx,
    data_before: Option<&Context>,
    now: Millis,
) {
    let instance = &slot.instance;
    // `data_before` is set only when the transition changed the data: else nothing to compare.
    let changes = data_before
        .map(|before| DataChanges::between(before, &instance.context))
        .unwrap_or_default();
    let machine_def = definition.machine(instance.machine);
    let stored = StoredEvent {
        id: event_id,
        instance_id: instance.id,
        seq: instance.seq,
        component: definition.name.clone(),
        machine: machine_def.name.clone(),
        event_type: event.clone(),
        payload: payload.clone(),
        state_before: machine_def.state(state_before).name.clone(),
        state_after: machine_def.state(instance.state).name.clone(),
        status: instance.status,
        context: None,
        changes,
        timers: timer_records(definition, instance),
        parent: None,
        entry_point: false,
        timestamp: now,
        causation_id: trace.causation,
        correlation_id: correlation,
        source_component: trace.source_component.clone(),
    };
    let interval = shared.options.snapshot_interval.max(1);
    if instance.seq.is_multiple_of(interval) || instance.status != Status::Active {
        commit.snapshots.push(record_of(definition, slot));
    }
    commit.events.push(stored);
}

/// The stored form of an instance.
pub(crate) fn record_of(definition: &Definition, slot: &Slot) -> InstanceRecord {
    let instance = &slot.instance;
    let machine_def = definition.machine(instance.machine);
    InstanceRecord {
        id: instance.id,
        component: definition.name.to_string(),
        machine: machine_def.name.to_string(),
        state: machine_def.state(instance.state).name.to_string(),
        status: instance.status,
        entry_point: instance.entry_point,
        seq: instance.seq,
        created_at: instance.created_at,
        updated_at: instance.updated_at,
        context: Context::clone(&instance.context),
        parent: instance.parent.as_deref().cloned(),
        timers: timer_records(definition, instance),
        correlation_id: slot.correlation,
    }
}

pub(crate) fn timer_records(definition: &Definition, instance: &Instance) -> Vec<TimerRecord> {
    let machine_def = definition.machine(instance.machine);
    instance
        .timers
        .iter()
        .map(|timer| TimerRecord {
            event: machine_def.transition(timer.transition).event_name.to_string(),
            deadline: timer.deadline,
        })
        .collect()
}
