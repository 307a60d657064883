//! The one routing mechanism, second half: *where* an envelope goes. Names are resolved against
//! the hosted components and the envelope becomes messages for the shards that own its targets:
//! one shard for a send or a creation (the shard of the instance id), every shard for a
//! delivery by selector.
//!
//! This is the seam a bus plugs into: a component hosted by another process is placed on the
//! bus instead of a local shard.

use crate::protocol::{CreateMsg, DeliverMsg, Origin, Selector, SendMsg, ShardMsg, Trace};
use crate::registry::ComponentIdx;
use crate::router::broadcast_selectors;
use crate::shared::Shared;
use smallvec::SmallVec;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use xcomponent_core::instance::Context;
use xcomponent_core::message::{Envelope, MessageBody};

/// Messages produced by placing one envelope: (shard, message).
pub(crate) type Routed = Vec<(usize, ShardMsg)>;

/// The trace a placed message carries.
pub(crate) fn trace_of(envelope: &Envelope) -> Trace {
    Trace {
        causation: envelope.causation_id,
        correlation: envelope.correlation_id,
        depth: envelope.depth,
        source_component: envelope.source_component.as_deref().map(Arc::from),
    }
}

/// Turns an envelope into shard messages. `origin` is set when the envelope is stored (so its
/// application is recorded in the inbox and it leaves the outbox when done); a fan-out gets its
/// count of shards still to store their part here. An error names what does not exist here.
pub(crate) fn place(
    shared: &Shared,
    envelope: &Envelope,
    origin: Option<Origin>,
    out: &mut Routed,
) -> Result<(), String> {
    let registry = &shared.registry;
    let component = registry
        .index_of(&envelope.component)
        .ok_or_else(|| format!("component {} is not hosted by this runtime", envelope.component))?;
    let definition = registry.definition(component);
    let machine_of = |name: &str| {
        definition
            .machine_index(name)
            .ok_or_else(|| format!("machine {name} not found in component {}", definition.name))
    };
    let trace = trace_of(envelope);
    match &envelope.body {
        MessageBody::Send { instance_id, event, payload } => out.push((
            shared.shard_of(instance_id),
            ShardMsg::Send(SendMsg {
                target: *instance_id,
                event: event.as_str().into(),
                payload: payload.clone(),
                trace,
                reply: None,
                origin,
            }),
        )),
        MessageBody::Create { machine, instance_id, context, parent } => out.push((
            shared.shard_of(instance_id),
            ShardMsg::Create(CreateMsg {
                component,
                machine: machine_of(machine)?,
                id: *instance_id,
                context: context.clone(),
                parent: parent.clone(),
                entry_point: false,
                trace,
                reply: None,
                origin,
            }),
        )),
        MessageBody::Broadcast { machine: name, state, event, payload, filters } => {
            let machine = machine_of(name)?;
            let state = match state {
                Some(state) => Some(
                    definition
                        .machine(machine)
                        .state_index(state)
                        .ok_or_else(|| format!("state {state} not found in machine {name}"))?,
                ),
                None => None,
            };
            let selectors =
                broadcast_selectors(definition, machine, state, event, payload, filters);
            fan_out(shared, component, selectors, event, payload, trace, origin, out);
        }
        MessageBody::Deliver { machine, selectors, event, payload } => {
            let machine = machine_of(machine)?;
            let machine_def = definition.machine(machine);
            let mut resolved = Vec::with_capacity(selectors.len());
            for selector in selectors {
                let states = match &selector.states {
                    Some(names) => Some(
                        names
                            .iter()
                            .map(|name| {
                                machine_def.state_index(name).ok_or_else(|| {
                                    format!(
                                        "state {name} not found in machine {}",
                                        machine_def.name
                                    )
                                })
                            })
                            .collect::<Result<SmallVec<_>, String>>()?,
                    ),
                    None => None,
                };
                resolved.push(Selector { machine, states, filters: selector.filters.clone() });
            }
            fan_out(shared, component, resolved, event, payload, trace, origin, out);
        }
        // Made by the webhook dispatcher (`webhook`), whose reply comes back as a shard message.
        MessageBody::HookCall { .. } => {
            return Err("a hook call goes to the webhook dispatcher, not to a shard".into());
        }
    }
    Ok(())
}

/// A delivery by selector to every shard; a stored one counts the shards still to store their
/// part.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    shared: &Shared,
    component: ComponentIdx,
    selectors: Vec<Selector>,
    event: &str,
    payload: &Context,
    trace: Trace,
    origin: Option<Origin>,
    out: &mut Routed,
) {
    let selectors: Arc<[Selector]> = selectors.into();
    let payload = Arc::new(payload.clone());
    let event: Arc<str> = event.into();
    let shards = shared.shard_count();
    let origin = origin.map(|origin| Origin {
        pending_shards: Some(Arc::new(AtomicUsize::new(shards))),
        ..origin
    });
    for shard in 0..shards {
        out.push((
            shard,
            ShardMsg::Deliver(DeliverMsg {
                component,
                selectors: selectors.clone(),
                event: event.clone(),
                payload: payload.clone(),
                trace: trace.clone(),
                reply: None,
                origin: origin.clone(),
            }),
        ));
    }
}
