//! Webhook hooks on the shard's side: the calls a step reached are stored in the outbox with
//! the step (`queue_hook_calls`), and a call's reply is applied like a stored message
//! (`apply_hook_result`): one stored event `hook:<method>` (the data patch merged, or nothing
//! changed on a failure), the actions (or the `onError` event) routed through
//! `router::route_effect`, the inbox entry and the call's outbox removal, all in one commit.

use super::ShardWork;
use super::record::record_transition;
use crate::handlers::PendingCall;
use crate::ids::DrawId;
use crate::protocol::{HookOutcome, HookResultMsg, Trace};
use crate::registry::ComponentIdx;
use crate::router::Source;
use crate::shared::Shared;
use crate::stream::RuntimeEvent;
use serde_json::Value;
use smallvec::SmallVec;
use std::sync::Arc;
use xcomponent_core::effect::{Command, Effect, HookKind, IdSeed, Sender, Target};
use xcomponent_core::instance::{Context, EventId, Millis, PendingTimer};
use xcomponent_core::message::{Envelope, MessageBody, MessageId};

/// The event type recorded in history for the reply of a webhook `method`.
pub(crate) fn hook_event_type(method: &str) -> String {
    format!("hook:{method}")
}

fn hook_kind(hook: &str) -> HookKind {
    match hook {
        "onExit" => HookKind::Exit,
        "onEntry" => HookKind::Entry,
        _ => HookKind::Triggered,
    }
}

impl ShardWork {
    /// Stores the webhook calls a step of `source` reached, with the step (or, without a
    /// store, keeps them to hand over once the batch is settled).
    pub(super) fn queue_hook_calls(
        &mut self,
        shared: &Shared,
        component: ComponentIdx,
        source: Source,
        calls: Vec<PendingCall>,
        trace: &Trace,
        now: Millis,
    ) {
        let definition = shared.registry.definition(component);
        let machine = definition.machine(source.machine).name.to_string();
        for call in calls {
            let envelope = Envelope {
                id: MessageId::draw(),
                component: definition.name.to_string(),
                body: MessageBody::HookCall {
                    instance_id: source.id,
                    machine: machine.clone(),
                    method: call.method,
                    hook: call.kind.as_str().to_owned(),
                    state: call.state,
                    event: call.event,
                    payload: call.payload,
                    context: call.context,
                },
                causation_id: trace.causation,
                correlation_id: trace.correlation,
                depth: trace.depth,
                source_component: None,
                source_instance: Some(source.id),
                created_at: now,
            };
            if shared.store.is_some() {
                self.batch.commit.outbox.push(envelope);
            } else {
                self.batch.messages.push(envelope);
            }
        }
    }

    /// Applies a webhook's reply (or its failure) to the instance whose hook it is.
    pub(super) fn apply_hook_result(
        &mut self,
        shared: &Shared,
        result: HookResultMsg,
        now: Millis,
    ) {
        let HookResultMsg { target, method, hook, outcome, on_error, trace, origin } = result;
        if let Some(origin) = &origin
            && origin.applied_by(&target)
        {
            self.receipt_duplicate(shared, origin, true);
            return;
        }
        let Some(slot) = self.instances.slot_of(&target).and_then(|position| {
            let slot = self.instances.get_mut(position)?;
            Some((position, slot))
        }) else {
            // The instance finished since the call (a hook of a final state, say): the reply
            // has nothing left to change.
            tracing::info!(instance = %target, method = &*method, "Webhook reply for an instance no longer live; dropped.");
            if let Some(origin) = &origin {
                self.receipt_answered(origin);
            }
            return;
        };
        let (position, slot) = slot;
        let component = slot.component;
        let machine = slot.instance.machine;
        let definition = shared.registry.definition(component);
        let paths = shared.registry.indexed_paths(component, machine);
        if shared.store.is_some() {
            self.batch.undo.entry(target).or_insert_with(|| Some(slot.clone()));
            self.batch.touched.push(target);
        }
        let timers: SmallVec<[PendingTimer; 2]> = slot.instance.timers.iter().copied().collect();
        let context_before = Arc::clone(&slot.instance.context);
        let limit = shared.options.max_data_bytes;
        let mut effects = Vec::new();
        let mut recorded = Context::new();
        recorded.insert("hook".into(), Value::String(hook.to_string()));
        let failure = match outcome {
            HookOutcome::Replied(reply) => {
                let mut failure = None;
                if !reply.context.is_empty() {
                    let mut patched = Context::clone(&context_before);
                    for (key, value) in &reply.context {
                        patched.insert(key.clone(), value.clone());
                    }
                    let bytes = crate::size::json_bytes(&patched);
                    if bytes > limit {
                        failure = Some(format!(
                            "the reply's data patch would make the data {bytes} bytes (limit {limit})"
                        ));
                    } else {
                        slot.instance.context = Arc::new(patched);
                    }
                }
                if failure.is_none() {
                    let mut sender = Sender::new(IdSeed::new(target, slot.instance.seq + 1, now));
                    reply.issue(&mut sender);
                    effects.extend(sender.commands().iter().cloned().map(Effect::Command));
                    recorded.insert("ok".into(), Value::Bool(true));
                }
                failure
            }
            HookOutcome::Failed { error, attempts } => {
                recorded.insert("attempts".into(), Value::from(attempts));
                Some(error)
            }
        };
        if let Some(error) = &failure {
            recorded.insert("ok".into(), Value::Bool(false));
            recorded.insert("error".into(), Value::String(error.clone()));
            tracing::warn!(instance = %target, method = &*method, %error, "Webhook hook failed; the instance is unchanged.");
            if let Some(event) = &on_error {
                let mut payload = Context::new();
                payload.insert("method".into(), Value::String(method.to_string()));
                payload.insert("hook".into(), Value::String(hook.to_string()));
                payload.insert("error".into(), Value::String(error.clone()));
                effects.push(Effect::Command(Command::Send {
                    component: None,
                    target: Target::SelfInstance,
                    event: event.to_string(),
                    payload,
                }));
            }
            if self.streaming {
                self.batch.events.push(RuntimeEvent::HookFailed {
                    component,
                    instance: target,
                    kind: hook_kind(&hook),
                    method: method.clone(),
                    error: error.clone(),
                });
            }
        }
        slot.instance.seq += 1;
        slot.instance.updated_at = now;
        let state = slot.instance.state;
        let correlation = trace.correlation.unwrap_or(slot.correlation);
        let data_before =
            (!Arc::ptr_eq(&context_before, &slot.instance.context)).then_some(&*context_before);
        self.instances.reconcile(position, data_before, &timers, paths);
        let event_id = if shared.store.is_some() { EventId::draw() } else { super::apply::NO_ID };
        if shared.store.is_some()
            && let Some(slot) = self.instances.get(position)
        {
            let event: Arc<str> = hook_event_type(&method).into();
            record_transition(
                &mut self.batch.commit,
                shared,
                definition,
                slot,
                &event,
                &recorded,
                &trace,
                correlation,
                event_id,
                state,
                data_before,
                now,
            );
        }
        if let Some(origin) = &origin {
            self.receipt_applied(shared, origin, target, true);
        }
        if !effects.is_empty() {
            let next = Trace {
                causation: Some(event_id).filter(|id| *id != super::apply::NO_ID),
                correlation: Some(correlation),
                depth: trace.depth + 1,
                source_component: None,
            };
            self.route_effects(shared, component, Source { id: target, machine }, effects, next);
        }
    }
}
