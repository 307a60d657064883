//! Applying messages to the shard's instances: create, send, deliver (fan-out), timers.
//! Each applied step records its stored event, runtime event and routed effects in the batch.

use super::ShardWork;
use super::batch::Reply;
use super::record::{record_transition, timer_records};
use super::state::{Instances, Slot};
use crate::error::RuntimeError;
use crate::ids::DrawId;
use crate::options::ContextSchemaMode;
use crate::protocol::{CreateMsg, DeliverMsg, SendMsg, ShardMsg, Trace};
use crate::registry::ComponentIdx;
use crate::router::{Source, route_effect};
use crate::shared::Shared;
use crate::stream::RuntimeEvent;
use crate::views::{BatchOutcome, SendOutcome};
use smallvec::SmallVec;
use std::sync::Arc;
use uuid::Uuid;
use xcomponent_core::context_schema::Presence;
use xcomponent_core::definition::{Definition, EntryMode};
use xcomponent_core::effect::Effect;
use xcomponent_core::engine::{self, EventRef, Hooks, Ignored, NoHooks, StepResult};
use xcomponent_core::instance::{
    Context, EventId, InstanceId, Millis, PendingTimer, StateIdx, Status, TransitionIdx,
};
use xcomponent_core::matching::IndexKey;
use xcomponent_core::message::DeadLetterKind;
use xcomponent_core::model::Operator;
use xcomponent_core::store::{CREATED_EVENT_TYPE, StoredEvent};

/// Instances looked up together before their events are applied (see `apply_many`).
const LOOKUP_GROUP: usize = 64;

/// The id recorded when no store is used (ids then serve nothing and cost a clock read).
pub(crate) const NO_ID: EventId = EventId(Uuid::nil());

/// Where the outcome of a create goes.
type CreateReply = tokio::sync::oneshot::Sender<Result<InstanceId, RuntimeError>>;

/// What one step did (names resolved only when a caller asks).
pub(crate) enum Applied {
    Transitioned {
        component: ComponentIdx,
        machine: u16,
        from: StateIdx,
        to: StateIdx,
        status: Status,
        event_id: EventId,
    },
    Ignored {
        component: ComponentIdx,
        machine: u16,
        state: StateIdx,
        ignored: Ignored,
    },
}

impl ShardWork {
    pub(crate) fn process(&mut self, shared: &Shared, message: ShardMsg) {
        let now = shared.clock.now();
        match message {
            ShardMsg::Create(create) => {
                let reply = create.reply.is_some();
                let origin = create.origin.clone();
                if let Some(origin) = &origin
                    && origin.applied_by(&create.id)
                {
                    self.receipt_duplicate(shared, origin, true);
                    return;
                }
                // The instance that asked for it (a child's parent), else the one refused.
                let (component, asked_by) = (
                    create.component,
                    create.parent.as_ref().map_or(create.id, |parent| parent.instance_id),
                );
                let (sender, result) = self.apply_create(shared, create, now);
                if let (false, true, Err(error)) = (reply, self.streaming, &result)
                    && !matches!(error, RuntimeError::DuplicateInstance(_))
                {
                    // A routed creation that is refused is visible, not only a dead letter.
                    self.batch.events.push(RuntimeEvent::EffectFailed {
                        component,
                        instance: asked_by,
                        error: error.to_string(),
                    });
                }
                if let Some(origin) = &origin {
                    match &result {
                        Ok(id) => self.receipt_applied(shared, origin, *id, true),
                        Err(RuntimeError::DuplicateInstance(_)) => {
                            self.receipt_duplicate(shared, origin, true)
                        }
                        Err(_) if reply => self.receipt_answered(origin),
                        Err(error) => self.receipt_dead(
                            shared,
                            origin,
                            DeadLetterKind::Rejected,
                            error.to_string(),
                        ),
                    }
                }
                match (sender, result) {
                    (Some(sender), Ok(id)) => self.batch.replies.push(Reply::Created(sender, id)),
                    (Some(sender), Err(error)) => {
                        let _ = sender.send(Err(error));
                    }
                    (None, Err(error)) if !reply => {
                        tracing::warn!(shard = self.index, %error, "Routed create failed.")
                    }
                    _ => {}
                }
            }
            ShardMsg::Send(send) => self.process_send(shared, send, now),
            ShardMsg::SendMany(event, items, reply) => {
                let outcome = self.apply_many(shared, &event, items, now);
                if let Some(sender) = reply {
                    self.batch.replies.push(Reply::Many(sender, outcome));
                }
            }
            ShardMsg::CreateMany(creates, reply) => {
                let mut created = 0;
                for create in creates {
                    if let (_, Ok(_)) = self.apply_create(shared, create, now) {
                        created += 1;
                    }
                }
                self.batch.replies.push(Reply::Count(reply, created));
            }
            ShardMsg::HookResult(result) => self.apply_hook_result(shared, result, now),
            ShardMsg::Deliver(deliver) => {
                let reply = deliver.reply.clone();
                let count = self.apply_deliver(shared, deliver, now);
                if let Some(fan_in) = reply {
                    self.batch.replies.push(Reply::FanIn(fan_in, count));
                }
            }
            // Answered after the batch is committed or rolled back: reads see only stored state.
            ShardMsg::Query(query) => self.batch.queries.push(query),
            ShardMsg::Restore(records, reply) => {
                let count = records.len();
                for (component, correlation, mut instance) in records {
                    if instance.context.is_empty() {
                        instance.context = self.empty_context.clone();
                    }
                    let paths = shared.registry.indexed_paths(component, instance.machine);
                    let definition = shared.registry.definition(component);
                    if definition.entry_mode == EntryMode::Singleton
                        && definition.entry_machine == Some(instance.machine)
                    {
                        let _ = shared.claim_singleton(component, instance.id);
                    }
                    if self.instances.slot_of(&instance.id).is_none() {
                        self.instances.insert(Slot::new(component, correlation, instance), paths);
                    }
                }
                let _ = reply.send(count);
            }
            ShardMsg::Evict(eviction) => self.batch.evictions.push(eviction),
            ShardMsg::Tick(done) | ShardMsg::Barrier(done) => {
                self.batch.replies.push(Reply::Done(done))
            }
        }
    }

    /// Applies one event type to many instances. Lookups are done a group at a time before the
    /// steps, so the memory accesses of a group overlap instead of stalling one after another.
    fn apply_many(
        &mut self,
        shared: &Shared,
        event: &Arc<str>,
        items: Vec<(InstanceId, Context)>,
        now: Millis,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let trace = Trace::root(None, None);
        if self.streaming {
            // One runtime event per transition at most: grown once, not doubled and moved.
            self.batch.events.reserve(items.len());
        }
        let mut positions: Vec<Option<u32>> = Vec::with_capacity(LOOKUP_GROUP);
        for group in items.chunks(LOOKUP_GROUP) {
            positions.clear();
            positions.extend(group.iter().map(|(id, _)| self.instances.slot_of(id)));
            let mut warm = 0u32;
            for position in positions.iter().flatten() {
                if let Some(slot) = self.instances.get(*position) {
                    warm = warm.wrapping_add(u32::from(slot.instance.state));
                }
            }
            self.instances.note_warm(warm);
            for ((target, payload), position) in group.iter().zip(positions.iter()) {
                let Some(position) = *position else {
                    outcome.failed += 1;
                    continue;
                };
                match self
                    .apply_at(shared, position, *target, event, payload, &trace, None, now, false)
                {
                    Ok(Applied::Transitioned { .. }) => outcome.transitioned += 1,
                    Ok(Applied::Ignored { .. }) => outcome.ignored += 1,
                    Err(_) => outcome.failed += 1,
                }
            }
        }
        outcome
    }

    fn process_send(&mut self, shared: &Shared, send: SendMsg, now: Millis) {
        if let Some(origin) = &send.origin
            && origin.applied_by(&send.target)
        {
            self.receipt_duplicate(shared, origin, true);
            return;
        }
        let report_ignored = true;
        let result = self.apply_event(
            shared,
            send.target,
            &send.event,
            &send.payload,
            &send.trace,
            None,
            now,
            report_ignored,
        );
        if let Some(origin) = &send.origin {
            match &result {
                Ok(Applied::Transitioned { .. }) => {
                    self.receipt_applied(shared, origin, send.target, true)
                }
                // A command whose sender waits hears the outcome instead.
                _ if send.reply.is_some() => self.receipt_answered(origin),
                Ok(Applied::Ignored { component, machine, state, ignored }) => {
                    let machine_def = shared.registry.definition(*component).machine(*machine);
                    let reason = ignored.describe(machine_def, *state, &send.event);
                    self.receipt_dead(shared, origin, DeadLetterKind::Rejected, reason);
                }
                // Its partition was handed over meanwhile: back to the broker, for the new owner.
                Err(RuntimeError::UnknownInstance(_))
                    if shared.in_partition_elsewhere(&send.target) =>
                {
                    shared.hand_back(origin.id());
                }
                Err(RuntimeError::UnknownInstance(_)) => {
                    let reason = format!(
                        "instance {} is not live here (it never existed or has finished)",
                        send.target
                    );
                    self.receipt_dead(shared, origin, DeadLetterKind::Undeliverable, reason);
                }
                Err(error @ RuntimeError::DataTooLarge { .. }) => {
                    self.receipt_dead(shared, origin, DeadLetterKind::Rejected, error.to_string())
                }
                Err(error) => self.receipt_dead(
                    shared,
                    origin,
                    DeadLetterKind::Undeliverable,
                    error.to_string(),
                ),
            }
        }
        let Some(sender) = send.reply else {
            if let Err(error) = result {
                self.report_effect_failure(
                    send.trace.source_component.as_deref(),
                    shared,
                    send.target,
                    error.to_string(),
                );
            }
            return;
        };
        match result {
            Ok(applied) => {
                let outcome = describe(shared, &self.instances, send.target, &send.event, applied);
                self.batch.replies.push(Reply::Sent(sender, outcome));
            }
            Err(error) => {
                let _ = sender.send(Err(error));
            }
        }
    }

    fn report_effect_failure(
        &mut self,
        _source: Option<&str>,
        shared: &Shared,
        target: InstanceId,
        error: String,
    ) {
        tracing::warn!(shard = self.index, instance = %target, %error, "Routed event could not be delivered.");
        if self.streaming {
            // The component of an unknown instance is unknown: report it against component 0's
            // namespace only if something is hosted; the error text names the instance.
            if !shared.registry.components().is_empty() {
                self.batch.events.push(RuntimeEvent::EffectFailed {
                    component: 0,
                    instance: target,
                    error,
                });
            }
        }
    }

    /// Creates an instance (first event of its history).
    fn apply_create(
        &mut self,
        shared: &Shared,
        create: CreateMsg,
        now: Millis,
    ) -> (Option<CreateReply>, Result<InstanceId, RuntimeError>) {
        let CreateMsg {
            component, machine, id, context, parent, entry_point, trace, reply, ..
        } = create;
        if self.instances.slot_of(&id).is_some() {
            return (reply, Err(RuntimeError::DuplicateInstance(id)));
        }
        // A creation runs no hook: its data is the initial data.
        let limit = shared.options.max_data_bytes;
        let bytes = crate::size::json_bytes(&context);
        if bytes > limit {
            return (reply, Err(RuntimeError::DataTooLarge { instance: id, bytes, limit }));
        }
        let definition = shared.registry.definition(component);
        // Every creation passes here (API, entry point, child, cross-component, hook), so the
        // schema holds for all of them; a routed one that breaks it becomes a dead letter.
        if let (ContextSchemaMode::Enforced, Some(schema)) =
            (shared.options.context_schema, &definition.machine(machine).context_schema)
        {
            // An entry point created at start has no data to give: only types are checked.
            let presence = if entry_point { Presence::Skipped } else { Presence::Checked };
            if let Err(violation) = schema.check(&context, presence) {
                let error = RuntimeError::ContextSchema {
                    component: definition.name.to_string(),
                    machine: definition.machine(machine).name.to_string(),
                    violation: Box::new(violation),
                };
                return (reply, Err(error));
            }
        }
        if definition.entry_mode == EntryMode::Singleton
            && definition.entry_machine == Some(machine)
        {
            if let Err(existing) = shared.claim_singleton(component, id) {
                let error = RuntimeError::SingletonExists {
                    component: definition.name.to_string(),
                    machine: definition.machine(machine).name.to_string(),
                    existing,
                };
                return (reply, Err(error));
            }
            self.batch.singleton_changes.push((component, id, true));
        }
        let mut instance = engine::create(definition, machine, id, context, parent, now);
        instance.entry_point = entry_point;

        if instance.context.is_empty() {
            // All empty contexts of a shard share one allocation (copy-on-write on first change).
            instance.context = self.empty_context.clone();
        }
        let event_id = if shared.store.is_some() { EventId::draw() } else { NO_ID };
        let correlation =
            trace.correlation.unwrap_or(if shared.store.is_some() { event_id } else { NO_ID });
        if shared.store.is_some() {
            self.batch.undo.entry(id).or_insert(None);
            self.batch.touched.push(id);
            let machine_def = definition.machine(machine);
            self.batch.commit.events.push(StoredEvent {
                id: event_id,
                instance_id: id,
                seq: instance.seq,
                component: definition.name.clone(),
                machine: machine_def.name.clone(),
                event_type: CREATED_EVENT_TYPE.into(),
                payload: Context::clone(&instance.context),
                state_before: "".into(),
                state_after: machine_def.state(instance.state).name.clone(),
                status: instance.status,
                context: Some(Context::clone(&instance.context)),
                changes: Default::default(),
                timers: timer_records(definition, &instance),
                parent: instance.parent.as_deref().cloned(),
                entry_point,
                timestamp: now,
                causation_id: trace.causation,
                correlation_id: correlation,
                source_component: trace.source_component.clone(),
            });
        }
        if self.streaming {
            self.batch.events.push(RuntimeEvent::InstanceCreated {
                component,
                instance: id,
                machine,
                state: instance.state,
                context: instance.context.clone(),
                parent: instance.parent.as_ref().map(|parent| parent.instance_id),
                event_id,
                at: now,
            });
        }
        let finished = !instance.is_active();
        let paths = shared.registry.indexed_paths(component, machine);
        self.instances.insert(Slot::new(component, correlation, instance), paths);
        if finished {
            self.dispose(shared, id);
        }
        (reply, Ok(id))
    }

    /// Applies one event (or one timer) to one instance and records everything it produced.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_event(
        &mut self,
        shared: &Shared,
        id: InstanceId,
        event: &Arc<str>,
        payload: &Context,
        trace: &Trace,
        timer: Option<TransitionIdx>,
        now: Millis,
        report_ignored: bool,
    ) -> Result<Applied, RuntimeError> {
        let position = self.instances.slot_of(&id).ok_or(RuntimeError::UnknownInstance(id))?;
        self.apply_at(shared, position, id, event, payload, trace, timer, now, report_ignored)
    }

    /// `apply_event` for an instance whose slot is known.
    #[allow(clippy::too_many_arguments)]
    fn apply_at(
        &mut self,
        shared: &Shared,
        position: u32,
        id: InstanceId,
        event: &Arc<str>,
        payload: &Context,
        trace: &Trace,
        timer: Option<TransitionIdx>,
        now: Millis,
        report_ignored: bool,
    ) -> Result<Applied, RuntimeError> {
        let Some(slot) = self.instances.get_mut(position) else {
            return Err(RuntimeError::UnknownInstance(id));
        };
        let component = slot.component;
        let correlation = trace.correlation.unwrap_or(slot.correlation);
        let definition: &Definition = shared.registry.definition(component);
        let machine = slot.instance.machine;
        let paths = shared.registry.indexed_paths(component, machine);
        if shared.store.is_some() {
            self.batch.undo.entry(id).or_insert_with(|| Some(slot.clone()));
            self.batch.touched.push(id);
        }
        let timers_before: SmallVec<[PendingTimer; 2]> =
            slot.instance.timers.iter().copied().collect();
        let state_before = slot.instance.state;
        // What a transition refused for the size of its data puts back: the fields a step
        // changes (the data before comes back from the step when it changed; the timers are
        // above).
        let (status_before, seq_before, updated_before) =
            (slot.instance.status, slot.instance.seq, slot.instance.updated_at);
        let mut no_hooks = NoHooks;
        let mut component_hooks = shared.handlers.for_component(&definition.name);
        let hooks: &mut dyn Hooks =
            if shared.handlers.is_empty() { &mut no_hooks } else { &mut component_hooks };
        let mut result = match timer {
            Some(transition) => {
                engine::fire_timer(definition, &mut slot.instance, transition, payload, now, hooks)
            }
            None => engine::step(
                definition,
                &mut slot.instance,
                EventRef { name: event, payload },
                now,
                hooks,
            ),
        };
        // Hooks mapped to webhooks that the step reached: calls to make once it is stored.
        let calls = std::mem::take(&mut component_hooks.calls);
        // The data before the step, when the step changed it.
        let data_before = match &mut result {
            StepResult::Transitioned(transitioned) => transitioned.previous_data.take(),
            StepResult::Ignored(_) => None,
        };
        let limit = shared.options.max_data_bytes;
        let too_large = data_before
            .as_ref()
            .map(|_| crate::size::json_bytes(&*slot.instance.context))
            .filter(|bytes| *bytes > limit);
        if too_large.is_some()
            && let Some(before) = &data_before
        {
            // Refused whole: state, data, timers and effects of the step are dropped.
            slot.instance.state = state_before;
            slot.instance.status = status_before;
            slot.instance.seq = seq_before;
            slot.instance.updated_at = updated_before;
            slot.instance.context = before.clone();
            slot.instance.timers = timers_before.iter().copied().collect();
        }
        // A refused step put the data back: nothing changed.
        let changed = data_before.as_deref().filter(|_| too_large.is_none());
        self.instances.reconcile(position, changed, &timers_before, paths);
        if let Some(bytes) = too_large {
            return Err(RuntimeError::DataTooLarge { instance: id, bytes, limit });
        }
        let transitioned = match result {
            StepResult::Ignored(ignored) => {
                if report_ignored && self.streaming && ignored != Ignored::StaleTimer {
                    let reason = ignored.describe(definition.machine(machine), state_before, event);
                    self.batch.events.push(RuntimeEvent::EventIgnored {
                        component,
                        instance: id,
                        event: event.clone(),
                        reason,
                    });
                }
                return Ok(Applied::Ignored { component, machine, state: state_before, ignored });
            }
            StepResult::Transitioned(transitioned) => transitioned,
        };
        let event_id = if shared.store.is_some() { EventId::draw() } else { NO_ID };
        let Some(slot) = self.instances.get(position) else {
            return Err(RuntimeError::UnknownInstance(id));
        };
        let instance = &slot.instance;
        if shared.store.is_some() {
            record_transition(
                &mut self.batch.commit,
                shared,
                definition,
                slot,
                event,
                payload,
                trace,
                correlation,
                event_id,
                state_before,
                data_before.as_deref(),
                now,
            );
        }
        if self.streaming {
            if timer.is_some() {
                self.batch.events.push(RuntimeEvent::TimeoutFired {
                    component,
                    instance: id,
                    machine,
                    transition: transitioned.transition,
                });
            }
            self.batch.events.push(RuntimeEvent::StateChanged {
                component,
                instance: id,
                machine,
                from: transitioned.from,
                to: transitioned.to,
                transition: transitioned.transition,
                context: instance.context.clone(),
                status: instance.status,
                event_id,
                at: now,
            });
        }
        let status = instance.status;
        if !transitioned.effects.is_empty() || !calls.is_empty() {
            let next = Trace {
                causation: Some(event_id).filter(|id| *id != NO_ID),
                correlation: Some(correlation),
                depth: trace.depth + 1,
                source_component: None,
            };
            let source = Source { id, machine };
            if !calls.is_empty() {
                self.queue_hook_calls(shared, component, source, calls, &next, now);
            }
            self.route_effects(shared, component, source, transitioned.effects, next);
        }
        if status != Status::Active {
            self.dispose(shared, id);
        }
        Ok(Applied::Transitioned {
            component,
            machine,
            from: transitioned.from,
            to: transitioned.to,
            status,
            event_id,
        })
    }

    pub(super) fn route_effects(
        &mut self,
        shared: &Shared,
        component: ComponentIdx,
        instance: Source,
        effects: Vec<Effect>,
        trace: Trace,
    ) {
        for effect in effects {
            if let Effect::HookFailed { kind, method, error } = &effect {
                tracing::warn!(instance = %instance.id, hook = kind.as_str(), method = &**method, %error, "Hook failed; the transition went on.");
                if self.streaming {
                    self.batch.events.push(RuntimeEvent::HookFailed {
                        component,
                        instance: instance.id,
                        kind: *kind,
                        method: method.clone(),
                        error: error.clone(),
                    });
                }
                continue;
            }
            if trace.depth > shared.options.max_chain_depth {
                let error = format!(
                    "event chain longer than {} hops; effect dropped",
                    shared.options.max_chain_depth
                );
                tracing::warn!(instance = %instance.id, %error, "Effect could not be routed.");
                if self.streaming {
                    self.batch.events.push(RuntimeEvent::EffectFailed {
                        component,
                        instance: instance.id,
                        error,
                    });
                }
                continue;
            }
            let now = shared.clock.now();
            if let Some(envelope) =
                route_effect(&shared.registry, component, instance, effect, &trace, now)
            {
                if shared.store.is_some() {
                    self.batch.commit.outbox.push(envelope);
                } else {
                    self.batch.messages.push(envelope);
                }
            }
        }
    }

    /// Removes a finished instance from the live set (its history stays in the store).
    fn dispose(&mut self, shared: &Shared, id: InstanceId) {
        let Some(slot) = self.instances.by_id(&id) else { return };
        let (component, machine) = (slot.component, slot.instance.machine);
        let paths = shared.registry.indexed_paths(component, machine);
        let Some(slot) = self.instances.remove(&id, paths) else { return };
        let definition = shared.registry.definition(component);
        if definition.entry_mode == EntryMode::Singleton
            && definition.entry_machine == Some(machine)
        {
            shared.release_singleton(component, id);
            self.batch.singleton_changes.push((component, id, false));
        }
        if self.streaming {
            self.batch.events.push(RuntimeEvent::InstanceDisposed {
                component,
                instance: id,
                machine,
                state: slot.instance.state,
                status: slot.instance.status,
            });
        }
    }

    /// Sends an event to every instance the selectors pick; returns how many transitioned.
    fn apply_deliver(&mut self, shared: &Shared, deliver: DeliverMsg, now: Millis) -> usize {
        // A partition's copy that reached this runtime after the partition was handed over:
        // back to the broker, for the new owner (applying it to nothing would mark it done).
        if let Some(origin) = &deliver.origin
            && let Some(tag) = origin.partition
            && !shared.is_ready_partition(deliver.component, tag.partition)
        {
            shared.hand_back(origin.id());
            return 0;
        }
        let mut targets: Vec<InstanceId> = Vec::new();
        for selector in deliver.selectors.iter() {
            let paths = shared.registry.indexed_paths(deliver.component, selector.machine);
            let indexed = selector.filters.iter().find_map(|filter| {
                if filter.operator != Operator::Eq {
                    return None;
                }
                let path = paths.iter().position(|path| **path == *filter.property)?;
                Some((path as u16, IndexKey::of(&filter.value)?))
            });
            let candidates: Vec<u32> = match indexed {
                Some((path, key)) => {
                    self.instances.lookup(deliver.component, selector.machine, path, &key).to_vec()
                }
                None => self
                    .instances
                    .iter()
                    .filter(|(_, slot)| {
                        slot.component == deliver.component
                            && slot.instance.machine == selector.machine
                    })
                    .map(|(position, _)| position)
                    .collect(),
            };
            for position in candidates {
                let Some(slot) = self.instances.get(position) else { continue };
                let instance = &slot.instance;
                let in_state =
                    selector.states.as_ref().is_none_or(|states| states.contains(&instance.state));
                if slot.component == deliver.component
                    && instance.machine == selector.machine
                    && instance.is_active()
                    && in_state
                    && deliver.origin.as_ref().is_none_or(|origin| origin.reaches(&instance.id))
                    && self.instances.filters_hold(slot, &selector.filters)
                {
                    targets.push(instance.id);
                }
            }
        }
        if deliver.selectors.len() > 1 {
            let mut seen = rustc_hash::FxHashSet::default();
            targets.retain(|id| seen.insert(*id));
        }
        let mut count = 0;
        for id in targets {
            if let Some(origin) = &deliver.origin
                && origin.applied_by(&id)
            {
                self.receipt_duplicate(shared, origin, false);
                continue;
            }
            if let Ok(Applied::Transitioned { .. }) = self.apply_event(
                shared,
                id,
                &deliver.event,
                &deliver.payload,
                &deliver.trace,
                None,
                now,
                false,
            ) {
                count += 1;
                if let Some(origin) = &deliver.origin {
                    self.receipt_applied(shared, origin, id, false);
                }
            }
        }
        if let Some(origin) = deliver.origin {
            self.batch.fan_outs.push(origin);
        }
        count
    }

    /// Fires the timers due now (at most `limit`; the rest on the next round).
    pub(crate) fn fire_due_timers(&mut self, shared: &Shared, limit: usize) {
        let now = shared.clock.now();
        for _ in 0..limit {
            let Some((id, transition)) = self.instances.pop_due(now) else { break };
            let Some(slot) = self.instances.by_id(&id) else { continue };
            let definition = shared.registry.definition(slot.component);
            let transition_def = definition.machine(slot.instance.machine).transition(transition);
            let event = transition_def.event_name.clone();
            let payload = engine::timer_payload(transition_def.kind);
            let trace = Trace::root(None, None);
            let _ = self.apply_event(
                shared,
                id,
                &event,
                &payload,
                &trace,
                Some(transition),
                now,
                false,
            );
            if shared.store.is_some() {
                self.batch.end_unit();
            }
        }
    }
}

/// The caller-facing outcome of one send.
fn describe(
    shared: &Shared,
    instances: &Instances,
    target: InstanceId,
    event: &str,
    applied: Applied,
) -> SendOutcome {
    match applied {
        Applied::Transitioned { component, machine, from, to, status, event_id } => {
            let machine_def = shared.registry.definition(component).machine(machine);
            SendOutcome::Transitioned {
                previous_state: machine_def.state(from).name.clone(),
                new_state: machine_def.state(to).name.clone(),
                status,
                event_id,
            }
        }
        Applied::Ignored { component, machine, state, ignored } => {
            let machine_def = shared.registry.definition(component).machine(machine);
            let allowed_events = match instances.by_id(&target) {
                Some(slot) => engine::available_transitions(
                    shared.registry.definition(component),
                    &slot.instance,
                )
                .into_iter()
                .filter(|(_, transition)| !transition.kind.is_timed())
                .map(|(_, transition)| transition.event_name.clone())
                .fold(Vec::new(), |mut names: Vec<Arc<str>>, name| {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                    names
                }),
                None => Vec::new(),
            };
            SendOutcome::Ignored {
                reason: ignored.describe(machine_def, state, event),
                current_state: machine_def.state(state).name.clone(),
                allowed_events,
            }
        }
    }
}
