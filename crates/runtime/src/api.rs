//! What a server needs from "the runtime", whether it is a runtime in this process
//! (`RuntimeHandle`) or a view over runtimes in other processes reached over a bus (the
//! distributed dashboard's `ClusterView`). The server holds an `Arc<dyn RuntimeApi>` and never
//! knows which.

use crate::commit_health::StoreHealth;
use crate::delivery::MessageCounts;
use crate::error::RuntimeError;
use crate::handle::{CreateRequest, RuntimeHandle, SendRequest};
use crate::registry::Registry;
use crate::stream::EventBatch;
use crate::views::{InstanceFilter, InstanceView, SendOutcome, ShardStats};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::broadcast;
use xcomponent_core::clock::Clock;
use xcomponent_core::instance::{Context, InstanceId, Millis};
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::message::{DeadLetter, MessageId};
use xcomponent_core::store::EventStore;

/// A runtime process as a server shows it (`GET /api/runtimes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePeer {
    /// Id drawn at the runtime's start.
    pub runtime_id: String,
    /// Its name (`--name`).
    pub name: String,
    /// The components it hosts.
    pub components: Vec<String>,
    /// Host of its HTTP API (empty: none).
    pub host: String,
    /// Port of its HTTP API (0: none).
    pub port: u16,
    /// Its last announce or heartbeat (ms since epoch).
    pub last_seen: Millis,
    /// When this server first heard of it (ms since epoch).
    pub first_seen: Millis,
    /// For each component it shares with other replicas: the partitions it owns.
    pub partitions: std::collections::BTreeMap<String, OwnedPartitions>,
}

/// The partitions of a shared component one runtime owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnedPartitions {
    /// The component's partition count.
    pub count: u32,
    /// The partitions owned, ascending.
    pub owned: Vec<u32>,
}

/// The runtime operations a server uses.
#[async_trait]
pub trait RuntimeApi: Send + Sync + std::fmt::Debug {
    /// The components (for a cluster view: every component announced so far). Indexes in events
    /// refer to this registry or a later one (components are only ever appended).
    fn registry(&self) -> Arc<Registry>;
    /// The store the server reads history from, if any.
    fn store(&self) -> Option<Arc<dyn EventStore>>;
    /// The clock.
    fn clock(&self) -> Arc<dyn Clock>;
    /// One live instance.
    async fn instance(&self, id: InstanceId) -> Option<InstanceView>;
    /// Live instances matching a filter, ordered by id.
    async fn instances(&self, filter: InstanceFilter) -> Vec<InstanceView>;
    /// Creates an instance. `RuntimeError::Accepted` when the request was handed over but its
    /// outcome is not known in time (another process owns the component).
    async fn create(&self, request: CreateRequest) -> Result<InstanceId, RuntimeError>;
    /// Sends an event to an instance; `RuntimeError::Accepted` as for `create`.
    async fn send(&self, request: SendRequest) -> Result<SendOutcome, RuntimeError>;
    /// Runtime events, published once stored.
    fn subscribe(&self) -> broadcast::Receiver<EventBatch>;
    /// How the store's commits are going.
    fn store_health(&self) -> StoreHealth;
    /// Counters of stored messages.
    fn message_counts(&self) -> MessageCounts;
    /// The dead-letter list, in pages.
    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, RuntimeError>;
    /// One dead letter.
    async fn dead_letter(&self, id: MessageId) -> Result<Option<DeadLetter>, RuntimeError>;
    /// Delivers a dead letter again.
    async fn replay_dead_letter(&self, id: MessageId) -> Result<bool, RuntimeError>;
    /// Removes a dead letter.
    async fn discard_dead_letter(&self, id: MessageId) -> Result<bool, RuntimeError>;
    /// Sends `event` to the instances of `machine` (in `state`, if given) passing `filters`;
    /// how many took a transition. `RuntimeError::Unsupported` where it cannot be done.
    async fn broadcast(
        &self,
        component: &str,
        machine: &str,
        state: Option<&str>,
        event: &str,
        payload: Context,
        filters: Vec<PropertyFilter>,
    ) -> Result<usize, RuntimeError> {
        let _ = (component, machine, state, event, payload, filters);
        Err(RuntimeError::Unsupported("broadcast"))
    }
    /// Waits until everything sent before, and everything it caused, is processed and stored.
    /// `RuntimeError::Unsupported` where that cannot be known (a view over other processes).
    async fn flush(&self) -> Result<(), RuntimeError> {
        Err(RuntimeError::Unsupported("flush"))
    }
    /// The counters of this process's shards (`/health`); none for a view over other processes.
    async fn stats(&self) -> Vec<ShardStats> {
        Vec::new()
    }
    /// Other runtime processes this one knows of (none for a runtime alone; every runtime on the
    /// bus for a cluster view).
    fn peers(&self) -> Vec<RuntimePeer> {
        Vec::new()
    }
    /// Whether this is a view over other processes (the distributed dashboard) rather than a
    /// runtime hosting its components here.
    fn is_cluster_view(&self) -> bool {
        false
    }
}

#[async_trait]
impl RuntimeApi for RuntimeHandle {
    fn registry(&self) -> Arc<Registry> {
        self.shared.registry.clone()
    }
    fn store(&self) -> Option<Arc<dyn EventStore>> {
        self.shared.store.clone()
    }
    fn clock(&self) -> Arc<dyn Clock> {
        self.shared.clock.clone()
    }
    async fn instance(&self, id: InstanceId) -> Option<InstanceView> {
        RuntimeHandle::instance(self, id).await
    }
    async fn instances(&self, filter: InstanceFilter) -> Vec<InstanceView> {
        RuntimeHandle::instances(self, filter).await
    }
    async fn create(&self, request: CreateRequest) -> Result<InstanceId, RuntimeError> {
        RuntimeHandle::create(self, request).await
    }
    async fn send(&self, request: SendRequest) -> Result<SendOutcome, RuntimeError> {
        RuntimeHandle::send(self, request).await
    }
    fn subscribe(&self) -> broadcast::Receiver<EventBatch> {
        RuntimeHandle::subscribe(self)
    }
    fn store_health(&self) -> StoreHealth {
        RuntimeHandle::store_health(self)
    }
    fn message_counts(&self) -> MessageCounts {
        RuntimeHandle::message_counts(self)
    }
    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, RuntimeError> {
        RuntimeHandle::dead_letters(self, after, limit).await
    }
    async fn dead_letter(&self, id: MessageId) -> Result<Option<DeadLetter>, RuntimeError> {
        RuntimeHandle::dead_letter(self, id).await
    }
    async fn replay_dead_letter(&self, id: MessageId) -> Result<bool, RuntimeError> {
        RuntimeHandle::replay_dead_letter(self, id).await
    }
    async fn discard_dead_letter(&self, id: MessageId) -> Result<bool, RuntimeError> {
        RuntimeHandle::discard_dead_letter(self, id).await
    }
    async fn broadcast(
        &self,
        component: &str,
        machine: &str,
        state: Option<&str>,
        event: &str,
        payload: Context,
        filters: Vec<PropertyFilter>,
    ) -> Result<usize, RuntimeError> {
        RuntimeHandle::broadcast(self, component, machine, state, event, payload, filters).await
    }
    async fn flush(&self) -> Result<(), RuntimeError> {
        RuntimeHandle::flush(self).await
    }
    async fn stats(&self) -> Vec<ShardStats> {
        RuntimeHandle::stats(self).await
    }
}
