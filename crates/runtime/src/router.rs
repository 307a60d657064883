//! The one routing mechanism, first half: *what* an effect sends. Every effect that leaves an
//! instance (hook sends, broadcasts, cascades, parent notifications, inter_machine children,
//! cross_component transitions, creates in other components) becomes one name-addressed
//! `Envelope`, with its message id and, for a creation, the new instance's id fixed here, before
//! the transition that produced it is stored (the envelope is stored with it, in the outbox).
//!
//! The second half, *where* an envelope goes, is `placement`.

use crate::ids::DrawId;
use crate::protocol::{Selector, Trace};
use crate::registry::{ComponentIdx, Registry};
use smallvec::smallvec;
use xcomponent_core::definition::Definition;
use xcomponent_core::effect::{Command, Effect, Target};
use xcomponent_core::instance::{Context, InstanceId, MachineIdx, Millis, ParentRef, StateIdx};
use xcomponent_core::matching::{PropertyFilter, resolve_filters};
use xcomponent_core::message::{Envelope, MessageBody, MessageId, SelectorSpec};

/// The instance an effect comes from (all the router needs of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    pub id: InstanceId,
    pub machine: MachineIdx,
}

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
    let every = || {
        vec![Selector {
            machine,
            states: state.map(|state| smallvec![state]),
            filters: filters.to_vec(),
        }]
    };
    let Some(event_index) = machine_def.event_index(event) else { return every() };
    let ruled: Vec<_> = machine_def
        .transitions
        .iter()
        .filter(|transition| transition.event == event_index && transition.rules.is_some())
        .filter(|transition| state.is_none_or(|state| transition.from == state))
        .collect();
    if ruled.is_empty() {
        return every();
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

/// The message one effect of `instance` (of component `own`) sends, or `None` when it sends
/// nothing (a cascade or correlation whose rule value is missing can match nothing). Targets
/// are named, not resolved: whether they exist is decided where the message is placed.
pub(crate) fn route_effect(
    registry: &Registry,
    own: ComponentIdx,
    instance: Source,
    effect: Effect,
    trace: &Trace,
    now: Millis,
) -> Option<Envelope> {
    let own_definition = registry.definition(own);
    let own_name = || own_definition.name.to_string();
    let (component, body) = match effect {
        Effect::Command(Command::Send { component, target, event, payload }) => {
            let instance_id = match target {
                Target::SelfInstance => instance.id,
                Target::Instance(id) => id,
            };
            (component.unwrap_or_else(own_name), MessageBody::Send { instance_id, event, payload })
        }
        Effect::Command(Command::Broadcast {
            component,
            machine,
            state,
            event,
            payload,
            filters,
        }) => (
            component.unwrap_or_else(own_name),
            MessageBody::Broadcast { machine, state, event, payload, filters },
        ),
        Effect::Command(Command::Create { component, machine, id, context }) => (
            component.unwrap_or_else(own_name),
            MessageBody::Create { machine, instance_id: id, context, parent: None },
        ),
        Effect::Cascade { component, machine, state, event, payload, filters } => {
            // A rule whose value is missing can match nothing: no delivery, not an error.
            let filters = filters?;
            let selectors = vec![SelectorSpec { states: Some(vec![state.to_string()]), filters }];
            let body = MessageBody::Deliver {
                machine: machine.to_string(),
                selectors,
                event: event.to_string(),
                payload,
            };
            (component.map_or_else(own_name, |name| name.to_string()), body)
        }
        Effect::NotifyParent { parent, event, payload } => (
            own_name(),
            MessageBody::Send { instance_id: parent, event: event.to_string(), payload },
        ),
        Effect::CreateChild { machine, context } => {
            let parent = ParentRef {
                instance_id: instance.id,
                machine: own_definition.machine(instance.machine).name.to_string(),
            };
            let body = MessageBody::Create {
                machine: own_definition.machine(machine).name.to_string(),
                instance_id: InstanceId::draw(),
                context,
                parent: Some(parent),
            };
            (own_name(), body)
        }
        Effect::CrossComponent { target, context, filters } => {
            let body = match target.event {
                Some(event) => MessageBody::Deliver {
                    machine: target.machine.to_string(),
                    selectors: vec![SelectorSpec { states: None, filters: filters? }],
                    event: event.to_string(),
                    payload: context,
                },
                None => MessageBody::Create {
                    machine: target.machine.to_string(),
                    instance_id: InstanceId::draw(),
                    context,
                    parent: None,
                },
            };
            (target.component.to_string(), body)
        }
        Effect::HookFailed { .. } => return None,
    };
    let crosses = component != *own_definition.name;
    Some(Envelope {
        id: MessageId::draw(),
        component,
        body,
        causation_id: trace.causation,
        correlation_id: trace.correlation,
        depth: trace.depth,
        source_component: if crosses { Some(own_name()) } else { None },
        source_instance: Some(instance.id),
        created_at: now,
    })
}
