//! The memory store's leases: the reference semantics of `LeaseStore`, which the PostgreSQL
//! statements and the Redis scripts reproduce. Kept inside the memory store's lock, so a commit's
//! fence check and its writes are one atomic step.

use std::collections::BTreeMap;
use std::time::Duration;
use xcomponent_core::instance::Millis;
use xcomponent_core::lease::{
    Fence, Lease, LeaseTable, MAX_OWNER_LEN, MAX_PARTITIONS, Partition, Renewal,
};
use xcomponent_core::store::{Error, Result};

/// Partition counts and leases of every component.
#[derive(Debug, Default)]
pub(crate) struct LeaseBook {
    partitions: BTreeMap<String, u32>,
    leases: BTreeMap<(String, Partition), Lease>,
    /// (component, owner) → member until.
    members: BTreeMap<(String, String), Millis>,
}

/// A ttl in milliseconds (saturating).
pub(crate) fn ttl_ms(ttl: Duration) -> Millis {
    Millis::try_from(ttl.as_millis()).unwrap_or(Millis::MAX)
}

/// Refuses a partition count or an owner name no backend should store.
pub(crate) fn check_partitions(component: &str, wanted: u32) -> Result<()> {
    if wanted == 0 || wanted > MAX_PARTITIONS {
        return Err(Error::Config(format!(
            "component {component}: {wanted} partitions asked, between 1 and {MAX_PARTITIONS} allowed"
        )));
    }
    Ok(())
}

/// Refuses an empty or overlong owner name.
pub(crate) fn check_owner(owner: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
        return Err(Error::Config(format!(
            "a lease owner's name must have 1 to {MAX_OWNER_LEN} bytes, not {}",
            owner.len()
        )));
    }
    Ok(())
}

impl LeaseBook {
    pub(crate) fn partitions(&mut self, component: &str, wanted: u32) -> Result<u32> {
        check_partitions(component, wanted)?;
        Ok(*self.partitions.entry(component.to_owned()).or_insert(wanted))
    }

    pub(crate) fn table(&self, component: &str, now: Millis) -> LeaseTable {
        let partitions = self.partitions.get(component).copied().unwrap_or(0);
        let leases = self
            .leases
            .range((component.to_owned(), 0)..=(component.to_owned(), Partition::MAX))
            .map(|(_, lease)| lease.clone())
            .collect();
        let members = self
            .members
            .iter()
            .filter(|((c, _), _)| c == component)
            .map(|((_, owner), until)| (owner.clone(), *until))
            .collect();
        LeaseTable { partitions, leases, members, now }
    }

    pub(crate) fn join(
        &mut self,
        component: &str,
        owner: &str,
        ttl: Duration,
        now: Millis,
    ) -> Result<()> {
        check_owner(owner)?;
        self.members
            .insert((component.to_owned(), owner.to_owned()), now.saturating_add(ttl_ms(ttl)));
        Ok(())
    }

    pub(crate) fn acquire(
        &mut self,
        component: &str,
        partition: Partition,
        owner: &str,
        ttl: Duration,
        now: Millis,
    ) -> Result<Option<Lease>> {
        check_owner(owner)?;
        let Some(&partitions) = self.partitions.get(component) else {
            return Err(Error::Config(format!("component {component} has no partition count yet")));
        };
        if partition >= partitions {
            return Err(Error::Config(format!(
                "component {component} has {partitions} partitions, not a partition {partition}"
            )));
        }
        let key = (component.to_owned(), partition);
        let epoch = match self.leases.get(&key) {
            Some(lease) if lease.is_live(now) => return Ok(None),
            Some(lease) => lease.epoch + 1,
            None => 1,
        };
        let lease = Lease {
            component: component.to_owned(),
            partition,
            owner: owner.to_owned(),
            epoch,
            expires_at: now.saturating_add(ttl_ms(ttl)),
        };
        self.leases.insert(key, lease.clone());
        Ok(Some(lease))
    }

    pub(crate) fn renew(
        &mut self,
        owner: &str,
        fences: &[Fence],
        ttl: Duration,
        now: Millis,
    ) -> Vec<Renewal> {
        fences
            .iter()
            .map(|fence| match self.leases.get_mut(&(fence.component.clone(), fence.partition)) {
                Some(lease) if lease.epoch == fence.epoch && lease.owner == owner => {
                    lease.expires_at = now.saturating_add(ttl_ms(ttl));
                    Renewal::Renewed(lease.expires_at)
                }
                _ => Renewal::Lost,
            })
            .collect()
    }

    pub(crate) fn release(&mut self, fence: &Fence) {
        if let Some(lease) = self.leases.get_mut(&(fence.component.clone(), fence.partition))
            && lease.epoch == fence.epoch
        {
            lease.expires_at = 0;
        }
    }

    /// The first fence whose lease has another epoch (or none), as the error a commit returns.
    pub(crate) fn check(&self, fences: &[Fence]) -> Result<()> {
        for fence in fences {
            let held = self
                .leases
                .get(&(fence.component.clone(), fence.partition))
                .is_some_and(|lease| lease.epoch == fence.epoch);
            if !held {
                return Err(Error::Fenced {
                    component: fence.component.clone(),
                    partition: fence.partition,
                    epoch: fence.epoch,
                });
            }
        }
        Ok(())
    }
}
