//! The shard protocol: the messages a shard is asked to process (creations, sends, deliveries,
//! queries, restores, barriers), with the trace and delivery origin they carry. Process-local: a
//! message here holds indexes and reply channels; what crosses a process is an `Envelope`.

use crate::error::RuntimeError;
use crate::registry::ComponentIdx;
use crate::views::{BatchOutcome, InstanceFilter, InstanceView, SendOutcome, ShardStats};
use rustc_hash::FxHashSet;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use xcomponent_core::instance::{Context, EventId, InstanceId, MachineIdx, ParentRef, StateIdx};
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::message::{Envelope, MessageId};

/// Where an event comes from in the causal chain.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    /// The stored event or command that caused this one.
    pub causation: Option<EventId>,
    /// The root of the chain; `None`: an event continues the target instance's own chain (so
    /// a whole business flow — an order, its payment, their replies — shares one id), a creation
    /// starts a new one.
    pub correlation: Option<EventId>,
    /// How many hops from the external event.
    pub depth: u32,
    /// Component that sent it, when it came from another one.
    pub source_component: Option<Arc<str>>,
}

impl Trace {
    /// A new chain started by an external command.
    pub fn root(correlation: Option<EventId>, causation: Option<EventId>) -> Trace {
        Trace { causation, correlation, depth: 0, source_component: None }
    }
}

/// A message's delivery state, carried by the shard messages placed from a stored envelope: its
/// id (recorded in the inbox when applied, removed from the outbox when done), what already
/// applied it, and how many times applying it failed for an infrastructure reason.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The stored message, as sent (kept for its id and for a dead letter).
    pub envelope: Arc<Envelope>,
    /// Instances that applied it already (known when it is delivered again after a restart or
    /// replayed): it is dropped for them.
    pub applied: Option<Arc<FxHashSet<InstanceId>>>,
    /// For a fan-out to every shard: shards that have not yet stored their part. The shard that
    /// stores the last part removes the message from the outbox.
    pub pending_shards: Option<Arc<AtomicUsize>>,
    /// Failed attempts so far (batches rolled back by a storage failure).
    pub attempts: u32,
    /// The copy of a delivery by selector for one partition of a shared component: it reaches
    /// the instances of that partition only.
    pub partition: Option<crate::partition::PartitionTag>,
}

impl Origin {
    /// The message id.
    pub fn id(&self) -> MessageId {
        self.envelope.id
    }

    /// Whether `instance` applied this message already.
    pub fn applied_by(&self, instance: &InstanceId) -> bool {
        self.applied.as_ref().is_some_and(|applied| applied.contains(instance))
    }

    /// Whether this message is for `instance`'s partition (always, unless it is one
    /// partition's copy of a delivery by selector).
    pub fn reaches(&self, instance: &InstanceId) -> bool {
        self.partition.is_none_or(|tag| tag.holds(instance))
    }
}

/// Which instances a delivery reaches: instances of `machine` (in one of `states`, if given)
/// whose data passes every filter.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    pub machine: MachineIdx,
    pub states: Option<SmallVec<[StateIdx; 2]>>,
    pub filters: Vec<PropertyFilter>,
}

/// Adds up per-shard counts of a fan-out and answers once every shard has reported.
#[derive(Debug)]
pub(crate) struct FanIn {
    total: AtomicUsize,
    remaining: AtomicUsize,
    reply: Mutex<Option<oneshot::Sender<Result<usize, RuntimeError>>>>,
}

impl FanIn {
    pub fn new(shards: usize, reply: oneshot::Sender<Result<usize, RuntimeError>>) -> Arc<FanIn> {
        Arc::new(FanIn {
            total: AtomicUsize::new(0),
            remaining: AtomicUsize::new(shards),
            reply: Mutex::new(Some(reply)),
        })
    }

    /// One shard's share; the last one sends the total (or the first error seen).
    pub fn report(&self, result: Result<usize, RuntimeError>) {
        match result {
            Ok(count) => {
                self.total.fetch_add(count, Ordering::SeqCst);
            }
            Err(error) => {
                if let Some(reply) = self.reply.lock().ok().and_then(|mut slot| slot.take()) {
                    let _ = reply.send(Err(error));
                }
            }
        }
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(reply) = self.reply.lock().ok().and_then(|mut slot| slot.take())
        {
            let _ = reply.send(Ok(self.total.load(Ordering::SeqCst)));
        }
    }
}

/// The instances of one partition of a shared component, to drop from a shard.
#[derive(Debug)]
pub(crate) struct Eviction {
    pub component: ComponentIdx,
    pub partitions: u32,
    pub partition: xcomponent_core::lease::Partition,
    pub reply: oneshot::Sender<usize>,
}

/// Create an instance.
#[derive(Debug)]
pub(crate) struct CreateMsg {
    pub component: ComponentIdx,
    pub machine: MachineIdx,
    pub id: InstanceId,
    pub context: Context,
    pub parent: Option<ParentRef>,
    pub entry_point: bool,
    pub trace: Trace,
    pub reply: Option<oneshot::Sender<Result<InstanceId, RuntimeError>>>,
    /// Set when the creation is a stored message.
    pub origin: Option<Origin>,
}

/// Send one event to one instance.
#[derive(Debug)]
pub(crate) struct SendMsg {
    pub target: InstanceId,
    pub event: Arc<str>,
    pub payload: Context,
    pub trace: Trace,
    pub reply: Option<oneshot::Sender<Result<SendOutcome, RuntimeError>>>,
    /// Set when the event is a stored message.
    pub origin: Option<Origin>,
}

/// Send one event to every instance a selector picks.
#[derive(Debug)]
pub(crate) struct DeliverMsg {
    pub component: ComponentIdx,
    pub selectors: Arc<[Selector]>,
    pub event: Arc<str>,
    pub payload: Arc<Context>,
    pub trace: Trace,
    pub reply: Option<Arc<FanIn>>,
    /// Set when the delivery is a stored message.
    pub origin: Option<Origin>,
}

/// The outcome of a webhook call, applied to the instance whose hook it is.
#[derive(Debug, Clone)]
pub(crate) enum HookOutcome {
    /// The endpoint answered: its patch and actions.
    Replied(crate::webhook::HookReply),
    /// The call finally failed (after its retries, or at once for a refusal).
    Failed { error: String, attempts: u32 },
}

/// The reply of a webhook call (`MessageBody::HookCall`), for the instance's shard.
#[derive(Debug, Clone)]
pub(crate) struct HookResultMsg {
    pub target: InstanceId,
    pub method: Arc<str>,
    /// `onEntry`, `onExit` or `triggeredMethod`.
    pub hook: Arc<str>,
    pub outcome: HookOutcome,
    /// The event sent to the instance when the call failed (`onError`).
    pub on_error: Option<Arc<str>>,
    pub trace: Trace,
    /// Set when the call is stored (it is then recorded in the inbox and leaves the outbox).
    pub origin: Option<Origin>,
}

/// A query over live instances.
#[derive(Debug)]
pub(crate) enum QueryMsg {
    One(InstanceId, oneshot::Sender<Option<InstanceView>>),
    Many(Arc<InstanceFilter>, oneshot::Sender<Vec<InstanceView>>),
    Stats(oneshot::Sender<ShardStats>),
}

/// Everything a shard is asked to do.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    Create(CreateMsg),
    Send(SendMsg),
    /// One event type to many instances (in order per instance).
    SendMany(Arc<str>, Vec<(InstanceId, Context)>, Option<oneshot::Sender<BatchOutcome>>),
    /// Create many instances (replies with how many were created).
    CreateMany(Vec<CreateMsg>, oneshot::Sender<Result<usize, RuntimeError>>),
    Deliver(DeliverMsg),
    /// A webhook's reply (or failure) for one instance.
    HookResult(HookResultMsg),
    Query(QueryMsg),
    Restore(Vec<(ComponentIdx, EventId, xcomponent_core::Instance)>, oneshot::Sender<usize>),
    /// Drop the instances of a partition of a shared component from memory once the current
    /// batch is settled (this runtime no longer owns it); answers how many.
    Evict(Eviction),
    /// Fire due timers now (manual timer mode), then answer.
    Tick(oneshot::Sender<()>),
    /// Answer once everything queued before has been processed and stored.
    Barrier(oneshot::Sender<()>),
}

impl ShardMsg {
    /// A copy of a message that nobody waits on (an effect routed between instances), kept so
    /// that a batch rolled back by a storage failure can be retried instead of losing it. The
    /// copy counts one more failed attempt.
    pub(crate) fn retry_copy(&self) -> Option<ShardMsg> {
        let retried = |origin: &Option<Origin>| {
            origin.clone().map(|origin| Origin { attempts: origin.attempts + 1, ..origin })
        };
        match self {
            ShardMsg::Send(send) if send.reply.is_none() => Some(ShardMsg::Send(SendMsg {
                target: send.target,
                event: send.event.clone(),
                payload: send.payload.clone(),
                trace: send.trace.clone(),
                reply: None,
                origin: retried(&send.origin),
            })),
            ShardMsg::Create(create) if create.reply.is_none() => {
                Some(ShardMsg::Create(CreateMsg {
                    component: create.component,
                    machine: create.machine,
                    id: create.id,
                    context: create.context.clone(),
                    parent: create.parent.clone(),
                    entry_point: create.entry_point,
                    trace: create.trace.clone(),
                    reply: None,
                    origin: retried(&create.origin),
                }))
            }
            ShardMsg::Deliver(deliver) if deliver.reply.is_none() => {
                Some(ShardMsg::Deliver(DeliverMsg {
                    component: deliver.component,
                    selectors: deliver.selectors.clone(),
                    event: deliver.event.clone(),
                    payload: deliver.payload.clone(),
                    trace: deliver.trace.clone(),
                    reply: None,
                    origin: retried(&deliver.origin),
                }))
            }
            ShardMsg::HookResult(result) => Some(ShardMsg::HookResult(HookResultMsg {
                origin: retried(&result.origin),
                ..result.clone()
            })),
            _ => None,
        }
    }

    /// A retry copy that did not fail on its own (its batch was fenced for another partition's
    /// work): the attempt `retry_copy` counted is given back.
    pub(crate) fn forgive_attempt(&mut self) {
        let origin = match self {
            ShardMsg::Send(send) => send.origin.as_mut(),
            ShardMsg::Create(create) => create.origin.as_mut(),
            ShardMsg::Deliver(deliver) => deliver.origin.as_mut(),
            ShardMsg::HookResult(result) => result.origin.as_mut(),
            _ => None,
        };
        if let Some(origin) = origin {
            origin.attempts = origin.attempts.saturating_sub(1);
        }
    }

    /// The delivery state of a stored message, if this is one.
    pub(crate) fn origin(&self) -> Option<&Origin> {
        match self {
            ShardMsg::Send(send) => send.origin.as_ref(),
            ShardMsg::Create(create) => create.origin.as_ref(),
            ShardMsg::Deliver(deliver) => deliver.origin.as_ref(),
            ShardMsg::HookResult(result) => result.origin.as_ref(),
            _ => None,
        }
    }
}
