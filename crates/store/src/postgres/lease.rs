//! Leases in PostgreSQL (`fsm_partitioning`, `fsm_leases`, migration 4): each operation is one
//! statement timed by the database's clock (`clock_timestamp()`), never by a runtime's. Two
//! runtimes racing for a partition serialize on its row: the loser's upsert finds it live and
//! changes nothing. The fence check of a commit is in `postgres.rs` (`fence_sql`).

use super::{BACKEND, PostgresStore, err};
use crate::common::corrupt;
use crate::lease_book::{check_owner, check_partitions, ttl_ms};
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, PgPool, Row};
use std::collections::BTreeMap;
use std::time::Duration;
use xcomponent_core::lease::{Fence, Lease, LeaseStore, LeaseTable, Partition, Renewal};
use xcomponent_core::store::{Error, Result};

/// The database's time in milliseconds since the epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::int8";

/// Attempts of `partitions` (a first insert racing another's sees neither row in its snapshot).
const PARTITIONS_ATTEMPTS: usize = 3;

fn partition_param(partition: Partition) -> Result<i32> {
    i32::try_from(partition)
        .map_err(|_| Error::Config(format!("partition {partition} out of range")))
}

fn epoch_of(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|e| corrupt(BACKEND, "lease", e))
}

/// The current epoch of each fence's lease (absent when the partition was never leased).
pub(super) async fn current_epochs<'a>(
    pool: &PgPool,
    fences: &'a [Fence],
) -> Result<BTreeMap<(&'a str, Partition), u64>> {
    let rows = sqlx::query(
        "SELECT f.ord, l.epoch FROM UNNEST($1::text[], $2::int4[]) WITH ORDINALITY AS f(component, part, ord) \
         JOIN fsm_leases l ON l.component = f.component AND l.partition = f.part",
    )
    .bind(fences.iter().map(|f| f.component.as_str()).collect::<Vec<_>>())
    .bind(fences.iter().map(|f| partition_param(f.partition)).collect::<Result<Vec<_>>>()?)
    .fetch_all(pool)
    .await
    .map_err(err("commit (fence lookup)"))?;
    let mut epochs = BTreeMap::new();
    for row in rows {
        let ord: i64 = row.try_get(0).map_err(err("commit (fence lookup)"))?;
        let epoch: i64 = row.try_get(1).map_err(err("commit (fence lookup)"))?;
        let index = usize::try_from(ord - 1).map_err(|e| corrupt(BACKEND, "fence lookup", e))?;
        if let Some(fence) = fences.get(index) {
            epochs.insert((fence.component.as_str(), fence.partition), epoch_of(epoch)?);
        }
    }
    Ok(epochs)
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn partitions(&self, component: &str, wanted: u32) -> Result<u32> {
        check_partitions(component, wanted)?;
        for _ in 0..PARTITIONS_ATTEMPTS {
            let stored: Option<i32> = sqlx::query_scalar(
                "WITH ins AS (INSERT INTO fsm_partitioning (component, partitions) VALUES ($1, $2) \
                 ON CONFLICT (component) DO NOTHING RETURNING partitions) \
                 SELECT partitions FROM ins UNION ALL \
                 SELECT partitions FROM fsm_partitioning WHERE component = $1 LIMIT 1",
            )
            .bind(component)
            .bind(i32::try_from(wanted).unwrap_or(i32::MAX))
            .fetch_optional(&self.pool)
            .await
            .map_err(err("partitions"))?;
            if let Some(count) = stored {
                return u32::try_from(count).map_err(|e| corrupt(BACKEND, "partitions", e));
            }
        }
        Err(Error::Unavailable(format!(
            "{BACKEND} partitions: the count of {component} was neither stored nor found"
        )))
    }

    async fn lease_table(&self, component: &str) -> Result<LeaseTable> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT p.partitions, {NOW_MS}, l.partition, l.owner, l.epoch, l.expires_at \
             FROM (SELECT $1::text AS component) c \
             LEFT JOIN fsm_partitioning p ON p.component = c.component \
             LEFT JOIN fsm_leases l ON l.component = c.component ORDER BY l.partition"
        )))
        .bind(component)
        .fetch_all(&self.pool)
        .await
        .map_err(err("lease_table"))?;
        let mut table =
            LeaseTable { partitions: 0, leases: Vec::new(), members: Vec::new(), now: 0 };
        for row in rows {
            let get = err("lease_table");
            let partitions: Option<i32> = row.try_get(0).map_err(&get)?;
            table.partitions = u32::try_from(partitions.unwrap_or(0)).unwrap_or(0);
            table.now = row.try_get(1).map_err(&get)?;
            let partition: Option<i32> = row.try_get(2).map_err(&get)?;
            if let Some(partition) = partition {
                table.leases.push(Lease {
                    component: component.to_owned(),
                    partition: u32::try_from(partition)
                        .map_err(|e| corrupt(BACKEND, "lease", e))?,
                    owner: row.try_get(3).map_err(&get)?,
                    epoch: epoch_of(row.try_get(4).map_err(&get)?)?,
                    expires_at: row.try_get(5).map_err(&get)?,
                });
            }
        }
        let members = sqlx::query(
            "SELECT owner, until FROM fsm_lease_members WHERE component = $1 ORDER BY owner",
        )
        .bind(component)
        .fetch_all(&self.pool)
        .await
        .map_err(err("lease_table"))?;
        for row in members {
            let get = err("lease_table");
            table.members.push((row.try_get(0).map_err(&get)?, row.try_get(1).map_err(&get)?));
        }
        Ok(table)
    }

    async fn join(&self, component: &str, owner: &str, ttl: Duration) -> Result<()> {
        check_owner(owner)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO fsm_lease_members (component, owner, until) VALUES ($1, $2, {NOW_MS} + $3) \
             ON CONFLICT (component, owner) DO UPDATE SET until = EXCLUDED.until"
        )))
        .bind(component)
        .bind(owner)
        .bind(ttl_ms(ttl))
        .execute(&self.pool)
        .await
        .map_err(err("join"))?;
        Ok(())
    }

    async fn acquire(
        &self,
        component: &str,
        partition: Partition,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        check_owner(owner)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO fsm_leases AS l (component, partition, owner, epoch, expires_at) \
             SELECT $1, $2, $3, 1, {NOW_MS} + $4 FROM fsm_partitioning p \
             WHERE p.component = $1 AND $2 < p.partitions \
             ON CONFLICT (component, partition) DO UPDATE SET owner = EXCLUDED.owner, \
             epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at WHERE l.expires_at <= {NOW_MS} \
             RETURNING l.epoch, l.expires_at"
        )))
        .bind(component)
        .bind(partition_param(partition)?)
        .bind(owner)
        .bind(ttl_ms(ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(err("acquire"))?;
        if let Some(row) = row {
            return Ok(Some(Lease {
                component: component.to_owned(),
                partition,
                owner: owner.to_owned(),
                epoch: epoch_of(row.try_get(0).map_err(err("acquire"))?)?,
                expires_at: row.try_get(1).map_err(err("acquire"))?,
            }));
        }
        // Nothing written: the lease is live, or the partition does not exist.
        let partitions: Option<i32> =
            sqlx::query_scalar("SELECT partitions FROM fsm_partitioning WHERE component = $1")
                .bind(component)
                .fetch_optional(&self.pool)
                .await
                .map_err(err("acquire"))?;
        match partitions {
            None => Err(Error::Config(format!("component {component} has no partition count yet"))),
            Some(count) if i64::from(partition) >= i64::from(count) => Err(Error::Config(format!(
                "component {component} has {count} partitions, not a partition {partition}"
            ))),
            Some(_) => Ok(None),
        }
    }

    async fn renew(&self, owner: &str, fences: &[Fence], ttl: Duration) -> Result<Vec<Renewal>> {
        if fences.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE fsm_leases l SET expires_at = {NOW_MS} + $5 \
             FROM UNNEST($1::text[], $2::int4[], $3::int8[]) AS f(component, part, epoch) \
             WHERE l.component = f.component AND l.partition = f.part AND l.epoch = f.epoch \
             AND l.owner = $4 RETURNING l.component, l.partition, l.expires_at"
        )))
        .bind(fences.iter().map(|f| f.component.as_str()).collect::<Vec<_>>())
        .bind(fences.iter().map(|f| partition_param(f.partition)).collect::<Result<Vec<_>>>()?)
        .bind(fences.iter().map(|f| i64::try_from(f.epoch).unwrap_or(i64::MAX)).collect::<Vec<_>>())
        .bind(owner)
        .bind(ttl_ms(ttl))
        .fetch_all(&self.pool)
        .await
        .map_err(err("renew"))?;
        let mut renewed = BTreeMap::new();
        for row in rows {
            let component: String = row.try_get(0).map_err(err("renew"))?;
            let partition: i32 = row.try_get(1).map_err(err("renew"))?;
            let expires_at: i64 = row.try_get(2).map_err(err("renew"))?;
            renewed.insert((component, partition), expires_at);
        }
        fences
            .iter()
            .map(|f| {
                let key = (f.component.clone(), partition_param(f.partition)?);
                Ok(renewed.get(&key).map_or(Renewal::Lost, |at| Renewal::Renewed(*at)))
            })
            .collect()
    }

    async fn release(&self, fence: &Fence) -> Result<()> {
        sqlx::query(
            "UPDATE fsm_leases SET expires_at = 0 \
             WHERE component = $1 AND partition = $2 AND epoch = $3",
        )
        .bind(&fence.component)
        .bind(partition_param(fence.partition)?)
        .bind(i64::try_from(fence.epoch).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(err("release"))?;
        Ok(())
    }
}
