//! Read-only questions about a shard's live instances, answered with names resolved.

use super::ShardWork;
use super::state::{Instances, Slot};
use crate::protocol::QueryMsg;
use crate::shared::Shared;
use crate::views::{AvailableTransition, InstanceFilter, InstanceView, ShardStats, TimerView};
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{MachineIdx, Millis, StateIdx};

impl ShardWork {
    pub(crate) fn answer(&mut self, shared: &Shared, query: QueryMsg, _now: Millis) {
        match query {
            QueryMsg::One(id, reply) => {
                let view =
                    self.instances.by_id(&id).map(|slot| view_of(shared, &self.instances, slot));
                let _ = reply.send(view);
            }
            QueryMsg::Many(filter, reply) => {
                let _ = reply.send(self.list(shared, &filter));
            }
            QueryMsg::Stats(reply) => {
                let _ = reply.send(ShardStats {
                    instances: self.instances.len(),
                    timers: self.instances.timer_count(),
                });
            }
        }
    }

    fn list(&self, shared: &Shared, filter: &InstanceFilter) -> Vec<InstanceView> {
        let component = match &filter.component {
            Some(name) => match shared.registry.index_of(name) {
                Some(index) => Some(index),
                None => return Vec::new(),
            },
            None => None,
        };
        let text = filter.text.as_deref().map(str::to_lowercase);
        let mut matching: Vec<&Slot> = self
            .instances
            .iter()
            .map(|(_, slot)| slot)
            .filter(|slot| component.is_none_or(|component| slot.component == component))
            .filter(|slot| filter.after.is_none_or(|after| slot.instance.id > after))
            .filter(|slot| {
                let machine =
                    shared.registry.definition(slot.component).machine(slot.instance.machine);
                filter.machine.as_deref().is_none_or(|name| *machine.name == *name)
                    && filter
                        .state
                        .as_deref()
                        .is_none_or(|name| *machine.state(slot.instance.state).name == *name)
            })
            .filter(|slot| {
                text.as_deref().is_none_or(|text| {
                    slot.instance.id.to_string().contains(text)
                        || serde_json::to_string(&*self.instances.data(slot))
                            .map(|json| json.to_lowercase().contains(text))
                            .unwrap_or(false)
                })
            })
            .collect();
        let limit = filter.limit.max(1);
        if matching.len() > limit {
            matching.select_nth_unstable_by_key(limit - 1, |slot| slot.instance.id);
            matching.truncate(limit);
        }
        matching.sort_unstable_by_key(|slot| slot.instance.id);
        matching.into_iter().map(|slot| view_of(shared, &self.instances, slot)).collect()
    }
}

/// A live instance with names resolved, its timers and what it accepts now.
pub(crate) fn view_of(shared: &Shared, instances: &Instances, slot: &Slot) -> InstanceView {
    let definition = shared.registry.definition(slot.component);
    let instance = &slot.instance;
    let machine = definition.machine(instance.machine);
    let state = machine.state(instance.state);
    let pending_timers = instance
        .timers
        .iter()
        .map(|timer| {
            let transition = machine.transition(timer.transition);
            TimerView {
                event: transition.event_name.clone(),
                target_state: machine.state(transition.to).name.clone(),
                kind: transition.kind,
                deadline: timer.deadline,
            }
        })
        .collect();
    let available_transitions = if instance.is_active() {
        available_from(definition, instance.machine, instance.state)
    } else {
        Vec::new()
    };
    InstanceView {
        id: instance.id,
        component_name: definition.name.clone(),
        machine_name: machine.name.clone(),
        current_state: state.name.clone(),
        state_type: state.kind,
        status: instance.status,
        context: instances.data(slot),
        public_member: machine.public_member,
        is_entry_point: instance.entry_point,
        parent: instance.parent.as_deref().cloned(),
        seq: instance.seq,
        created_at: instance.created_at,
        updated_at: instance.updated_at,
        pending_timers,
        available_transitions,
    }
}

/// The transitions leaving `state` of `machine`, with names resolved.
pub(crate) fn available_from(
    definition: &Definition,
    machine: MachineIdx,
    state: StateIdx,
) -> Vec<AvailableTransition> {
    let machine_def = definition.machine(machine);
    machine_def
        .transitions
        .iter()
        .filter(|transition| transition.from == state)
        .map(|transition| AvailableTransition {
            event: transition.event_name.clone(),
            to: machine_def.state(transition.to).name.clone(),
            kind: transition.kind,
            guard: transition.guard.as_ref().map(|guard| guard.source().to_owned()),
            target_machine: transition
                .child_machine
                .map(|child| definition.machine(child).name.to_string())
                .or_else(|| transition.cross.as_ref().map(|cross| cross.machine.to_string())),
            target_component: transition.cross.as_ref().map(|cross| cross.component.to_string()),
        })
        .collect()
}
