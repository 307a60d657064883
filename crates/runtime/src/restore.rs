//! Start-up: restore live instances from the store (latest snapshot + later events, as the store
//! folds them), re-arm their timers by absolute deadline (overdue ones fire once, at the first
//! timer round), rebuild the property index, then auto-create entry points where the component
//! asks for it.

use crate::error::RuntimeError;
use crate::handle::RuntimeHandle;
use crate::protocol::ShardMsg;
use crate::registry::ComponentIdx;
use crate::views::InstanceFilter;
use std::sync::Arc;
use tokio::sync::oneshot;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{Context, EventId, Instance, PendingTimer, Status};
use xcomponent_core::store::InstanceRecord;

/// Instances restored per page at start.
const RESTORE_PAGE: usize = 10_000;
/// Pages handed to shards and not yet inserted, per shard, while the next page is read.
const RESTORE_PAGES_IN_FLIGHT: usize = 2;

impl RuntimeHandle {
    /// Loads live instances page by page and hands them to their shards. The next page is read
    /// from the store while shards insert the previous ones (at most `RESTORE_PAGES_IN_FLIGHT`).
    pub(crate) async fn restore(&self) -> Result<(), RuntimeError> {
        self.restore_where(|record| self.shared.owns(&record.component, &record.id)).await
    }

    /// `restore`, of the live instances `keep` accepts only (a partition taken over).
    pub(crate) async fn restore_where(
        &self,
        keep: impl Fn(&InstanceRecord) -> bool,
    ) -> Result<(), RuntimeError> {
        let Some(store) = self.shared.store.clone() else { return Ok(()) };
        let mut after = None;
        let mut pending: std::collections::VecDeque<oneshot::Receiver<usize>> =
            std::collections::VecDeque::new();
        loop {
            let page =
                store.load_active(after, RESTORE_PAGE).await.map_err(RuntimeError::Storage)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let full = page.len() == RESTORE_PAGE;
            let mut per_shard: Vec<Vec<(ComponentIdx, EventId, Instance)>> =
                (0..self.shared.shard_count()).map(|_| Vec::new()).collect();
            for record in page {
                // On a bus, a store may be shared with runtimes hosting other components, or other
                // partitions of a shared component (`keep`): their instances are theirs.
                if self.shared.is_remote(&record.component) || !keep(&record) {
                    continue;
                }
                match self.instance_from_record(&record) {
                    Ok((component, instance)) => per_shard[self.shared.shard_of(&instance.id)]
                        .push((component, record.correlation_id, instance)),
                    Err(error) => {
                        tracing::error!(instance = %record.id, %error, "Instance not restored; its records are kept in the store.")
                    }
                }
            }
            for (shard, records) in per_shard.into_iter().enumerate() {
                if records.is_empty() {
                    continue;
                }
                let (reply, answer) = oneshot::channel();
                self.to_shard(shard, ShardMsg::Restore(records, reply)).await?;
                pending.push_back(answer);
            }
            while pending.len() > RESTORE_PAGES_IN_FLIGHT * self.shared.shard_count() {
                if let Some(answer) = pending.pop_front() {
                    answer.await.map_err(|_| RuntimeError::ShuttingDown)?;
                }
            }
            if !full {
                break;
            }
        }
        for answer in pending {
            answer.await.map_err(|_| RuntimeError::ShuttingDown)?;
        }
        Ok(())
    }

    /// Resolves a stored record against the hosted definitions.
    fn instance_from_record(
        &self,
        record: &InstanceRecord,
    ) -> Result<(ComponentIdx, Instance), RuntimeError> {
        let (component, machine) =
            self.shared.registry.resolve(&record.component, &record.machine)?;
        let machine_def = self.shared.registry.definition(component).machine(machine);
        let state = machine_def.state_index(&record.state).ok_or_else(|| {
            RuntimeError::Invalid(format!(
                "state {} no longer exists in machine {}",
                record.state, record.machine
            ))
        })?;
        let timers = record
            .timers
            .iter()
            .filter_map(|timer| {
                machine_def
                    .timed_transition(state, &timer.event)
                    .map(|transition| PendingTimer { transition, deadline: timer.deadline })
            })
            .collect();
        let instance = Instance {
            id: record.id,
            machine,
            state,
            status: record.status,
            entry_point: record.entry_point,
            seq: record.seq,
            created_at: record.created_at,
            updated_at: record.updated_at,
            context: Arc::new(record.context.clone()),
            parent: record.parent.clone().map(Box::new),
            timers,
        };
        if instance.status != Status::Active {
            return Err(RuntimeError::Invalid("finished instance offered as live".into()));
        }
        Ok((component, instance))
    }

    pub(crate) async fn create_entry_points(&self) -> Result<(), RuntimeError> {
        for (index, definition) in self.shared.registry.components().iter().enumerate() {
            let component = index as ComponentIdx;
            let (Some(machine), true) =
                (definition.entry_machine, definition.auto_create_entry_point)
            else {
                continue;
            };
            // A shared component's entry point lives in partition 0: its owner creates it.
            if let (Some(_), Some(state)) =
                (self.shared.shared_partitions(&definition.name), &self.shared.partitions)
                && !state.is_ready(&definition.name, 0)
            {
                continue;
            }
            if self.shared.singleton(component).is_some()
                || self.has_entry_point(definition, machine).await
            {
                continue;
            }
            match self.create_resolved(component, machine, Context::new(), None, None, true).await {
                Ok(id) => {
                    tracing::info!(component = &*definition.name, instance = %id, "Entry point created.")
                }
                Err(RuntimeError::SingletonExists { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn has_entry_point(&self, definition: &Definition, machine: u16) -> bool {
        let filter = InstanceFilter {
            component: Some(definition.name.to_string()),
            machine: Some(definition.machine(machine).name.to_string()),
            limit: usize::MAX,
            ..InstanceFilter::default()
        };
        self.instances(filter).await.iter().any(|view| view.is_entry_point)
    }
}
