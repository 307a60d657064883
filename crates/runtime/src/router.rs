//! The one routing mechanism: every effect that leaves an instance (hook sends, broadcasts,
//! cascades, parent notifications, inter_machine children, cross_component transitions, creates
//! in other components) becomes messages for the shards that own the targets.
//!
//! Targets are addressed by component name, so a bus can carry the same messages to another
//! process: a component that is not hosted here is the one place where that will plug in.

use crate::ids::DrawId;
use crate::protocol::{CreateMsg, DeliverMsg, Selector, SendMsg, ShardMsg, Trace};
use crate::registry::{ComponentIdx, Registry};
use crate::shared::Shared;
use smallvec::smallvec;
use std::sync::Arc;
use xcomponent_core::definition::Definition;
use xcomponent_core::effect::{Command, Effect, Target};
use xcomponent_core::instance::{Context, InstanceId, MachineIdx, ParentRef, StateIdx};
use xcomponent_core::matching::{PropertyFilter, resolve_filters};

/// The instance an effect comes from (all the router needs of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    pub id: InstanceId,
    pub machine: MachineIdx,
}

/// Messages produced by one effect: (shard, message).
pub(crate) type Routed = Vec<(usize, ShardMsg)>;

/// Builds the selectors of a broadcast of `event` to `machine`: when transitions on this event
/// carry matching rules, one selector per such transition (its rules read against the payload),
/// otherwise every instance (in `state`, if given). `filters` narrow both.
pub(crate) fn broadcast_selectors(
    definition: &Definition,
    machine: MachineIdx,
    state: Option<StateIdx>,
    event: &str,
    payload: &Context,
    filters: &[PropertyFilter],
) -> Vec<Selector> {
    let machine_def = definition.machine(machine);
    let Some(event_index) = machine_def.event_index(event) else {
        return vec![Selector {
            machine,
            states: state.map(|state| smallvec![state]),
            filters: filters.to_vec(),
        }];
    };
    let ruled: Vec<_> = machine_def
        .transitions
        .iter()
        .filter(|transition| transition.event == event_index && transition.rules.is_some())
        .filter(|transition| state.is_none_or(|state| transition.from == state))
        .collect();
    if ruled.is_empty() {
        return vec![Selector {
            machine,
            states: state.map(|state| smallvec![state]),
            filters: filters.to_vec(),
        }];
    }
    ruled
        .into_iter()
        .filter_map(|transition| {
            let mut resolved =
                resolve_filters(transition.rules.as_deref().unwrap_or(&[]), payload, None)?;
            resolved.extend_from_slice(filters);
            Some(Selector { machine, states: Some(smallvec![transition.from]), filters: resolved })
        })
        .collect()
}

/// A delivery to every shard.
pub(crate) fn fan_out(
    shared: &Shared,
    component: ComponentIdx,
    selectors: Vec<Selector>,
    event: Arc<str>,
    payload: Context,
    trace: Trace,
    out: &mut Routed,
) {
    let selectors: Arc<[Selector]> = selectors.into();
    let payload = Arc::new(payload);
    for shard in 0..shared.shard_count() {
        out.push((
            shard,
            ShardMsg::Deliver(DeliverMsg {
                component,
                selectors: selectors.clone(),
                event: event.clone(),
                payload: payload.clone(),
                trace: trace.clone(),
                reply: None,
            }),
        ));
    }
}

fn send(
    shared: &Shared,
    target: InstanceId,
    event: Arc<str>,
    payload: Context,
    trace: Trace,
    out: &mut Routed,
) {
    out.push((
        shared.shard_of(&target),
        ShardMsg::Send(SendMsg { target, event, payload, trace, reply: None }),
    ));
}

fn create(shared: &Shared, message: CreateMsg, out: &mut Routed) {
    out.push((shared.shard_of(&message.id), ShardMsg::Create(message)));
}

fn component_or(
    registry: &Registry,
    own: ComponentIdx,
    name: Option<&str>,
) -> Result<ComponentIdx, String> {
    match name {
        None => Ok(own),
        Some(name) => registry
            .index_of(name)
            .ok_or_else(|| format!("component {name} is not hosted by this runtime")),
    }
}

fn machine_of(definition: &Definition, name: &str) -> Result<MachineIdx, String> {
    definition
        .machine_index(name)
        .ok_or_else(|| format!("machine {name} not found in component {}", definition.name))
}

/// Turns one effect of `instance` (of component `own`) into shard messages.
pub(crate) fn route_effect(
    shared: &Shared,
    own: ComponentIdx,
    instance: Source,
    effect: Effect,
    trace: Trace,
    out: &mut Routed,
) -> Result<(), String> {
    let registry = &shared.registry;
    match effect {
        Effect::Command(Command::Send { component, target, event, payload }) => {
            component_or(registry, own, component.as_deref())?;
            let target = match target {
                Target::SelfInstance => instance.id,
                Target::Instance(id) => id,
            };
            send(shared, target, event.into(), payload, trace, out);
        }
        Effect::Command(Command::Broadcast {
            component,
            machine,
            state,
            event,
            payload,
            filters,
        }) => {
            let component = component_or(registry, own, component.as_deref())?;
            let definition = registry.definition(component);
            let machine = machine_of(definition, &machine)?;
            let state = match state.as_deref() {
                Some(name) => {
                    Some(definition.machine(machine).state_index(name).ok_or_else(|| {
                        format!(
                            "state {name} not found in machine {}",
                            definition.machine(machine).name
                        )
                    })?)
                }
                None => None,
            };
            let selectors =
                broadcast_selectors(definition, machine, state, &event, &payload, &filters);
            fan_out(shared, component, selectors, event.into(), payload, trace, out);
        }
        Effect::Command(Command::Create { component, machine, id, context }) => {
            let component = component_or(registry, own, component.as_deref())?;
            let machine = machine_of(registry.definition(component), &machine)?;
            create(
                shared,
                CreateMsg {
                    component,
                    machine,
                    id,
                    context,
                    parent: None,
                    entry_point: false,
                    trace,
                    reply: None,
                },
                out,
            );
        }
        Effect::Cascade { component, machine, state, event, payload, filters } => {
            let component = component_or(registry, own, component.as_deref())?;
            let definition = registry.definition(component);
            let machine = machine_of(definition, &machine)?;
            let state = definition
                .machine(machine)
                .state_index(&state)
                .ok_or_else(|| format!("cascade target state {state} not found"))?;
            // A rule whose value is missing can match nothing: no delivery, not an error.
            if let Some(filters) = filters {
                let selectors = vec![Selector { machine, states: Some(smallvec![state]), filters }];
                fan_out(shared, component, selectors, event, payload, trace, out);
            }
        }
        Effect::NotifyParent { parent, event, payload } => {
            send(shared, parent, event, payload, trace, out)
        }
        Effect::CreateChild { machine, context } => {
            let definition = registry.definition(own);
            let parent = ParentRef {
                instance_id: instance.id,
                machine: definition.machine(instance.machine).name.to_string(),
            };
            let id = InstanceId::draw();
            create(
                shared,
                CreateMsg {
                    component: own,
                    machine,
                    id,
                    context,
                    parent: Some(parent),
                    entry_point: false,
                    trace,
                    reply: None,
                },
                out,
            );
        }
        Effect::CrossComponent { target, context, filters } => {
            let component = component_or(registry, own, Some(&target.component))?;
            let machine = machine_of(registry.definition(component), &target.machine)?;
            let mut trace = trace;
            trace.source_component = Some(registry.definition(own).name.clone());
            match target.event {
                Some(event) => {
                    if let Some(filters) = filters {
                        fan_out(
                            shared,
                            component,
                            vec![Selector { machine, states: None, filters }],
                            event,
                            context,
                            trace,
                            out,
                        );
                    }
                }
                None => {
                    let id = InstanceId::draw();
                    create(
                        shared,
                        CreateMsg {
                            component,
                            machine,
                            id,
                            context,
                            parent: None,
                            entry_point: false,
                            trace,
                            reply: None,
                        },
                        out,
                    );
                }
            }
        }
        Effect::HookFailed { .. } => {}
    }
    Ok(())
}
