//! Leases in Redis: one Lua script per operation, so each is atomic and timed by the server's
//! clock (`TIME`), never by a runtime's.
//!
//! Keys: `<prefix>:parts` (hash: component → partition count), `<prefix>:lease:<component>`
//! (hash: partition → `epoch:expires_at:owner`, the owner last since it may hold colons) and
//! `<prefix>:members:<component>` (hash: owner → until). The
//! commit script reads the same hash to check a batch's fences before writing anything.

use super::{BACKEND, RedisStore, err};
use crate::common::corrupt;
use crate::lease_book::{check_owner, check_partitions, ttl_ms};
use async_trait::async_trait;
use redis::Script;
use std::time::Duration;
use xcomponent_core::instance::Millis;
use xcomponent_core::lease::{Fence, Lease, LeaseStore, LeaseTable, Partition, Renewal};
use xcomponent_core::store::{Error, Result};

/// The server's time in milliseconds, and the parse of a lease value; prepended to every script.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function parse(v)
  local epoch, exp, owner = string.match(v, '^(%d+):(%d+):(.*)$')
  return tonumber(epoch), tonumber(exp), owner
end
local function int(x) return string.format('%d', x) end
"#;

/// ARGV: prefix, component, wanted. Returns the stored count.
const PARTITIONS: &str = r#"
redis.call('HSETNX', ARGV[1] .. ':parts', ARGV[2], ARGV[3])
return redis.call('HGET', ARGV[1] .. ':parts', ARGV[2])
"#;

/// ARGV: prefix, component. Returns {count or 0, now, number of lease pairs, partition, value,
/// ..., owner, until, ...}: the lease pairs, then the member pairs.
const TABLE: &str = r#"
local leases = redis.call('HGETALL', ARGV[1] .. ':lease:' .. ARGV[2])
local out = {redis.call('HGET', ARGV[1] .. ':parts', ARGV[2]) or '0', int(now_ms()), int(#leases / 2)}
for _, v in ipairs(leases) do table.insert(out, v) end
for _, v in ipairs(redis.call('HGETALL', ARGV[1] .. ':members:' .. ARGV[2])) do table.insert(out, v) end
return out
"#;

/// ARGV: prefix, component, owner, ttl. Records the member's expiry.
const JOIN: &str = r#"
redis.call('HSET', ARGV[1] .. ':members:' .. ARGV[2], ARGV[3], int(now_ms() + tonumber(ARGV[4])))
return 1
"#;

/// ARGV: prefix, component, partition, owner, ttl. Returns {'ok', epoch, expires_at}, {'held'},
/// {'nocount'} or {'range', count}.
const ACQUIRE: &str = r#"
local count = tonumber(redis.call('HGET', ARGV[1] .. ':parts', ARGV[2]) or '0')
if count == 0 then return {'nocount'} end
if tonumber(ARGV[3]) >= count then return {'range', int(count)} end
local key = ARGV[1] .. ':lease:' .. ARGV[2]
local now = now_ms()
local epoch = 0
local v = redis.call('HGET', key, ARGV[3])
if v then
  local e, exp = parse(v)
  if exp > now then return {'held'} end
  epoch = e
end
epoch = epoch + 1
local exp = now + tonumber(ARGV[5])
redis.call('HSET', key, ARGV[3], int(epoch) .. ':' .. int(exp) .. ':' .. ARGV[4])
return {'ok', int(epoch), int(exp)}
"#;

/// ARGV: prefix, owner, ttl, then (component, partition, epoch) per fence. Returns one expiry per
/// fence, or '-1' for a lease lost.
const RENEW: &str = r#"
local now = now_ms()
local out = {}
for i = 4, #ARGV, 3 do
  local key = ARGV[1] .. ':lease:' .. ARGV[i]
  local v = redis.call('HGET', key, ARGV[i + 1])
  local result = '-1'
  if v then
    local e, _, owner = parse(v)
    if int(e) == ARGV[i + 2] and owner == ARGV[2] then
      local exp = now + tonumber(ARGV[3])
      redis.call('HSET', key, ARGV[i + 1], int(e) .. ':' .. int(exp) .. ':' .. owner)
      result = int(exp)
    end
  end
  table.insert(out, result)
end
return out
"#;

/// ARGV: prefix, component, partition, epoch. Sets the expiry to 0 if the epoch still holds.
const RELEASE: &str = r#"
local key = ARGV[1] .. ':lease:' .. ARGV[2]
local v = redis.call('HGET', key, ARGV[3])
if v then
  local e, _, owner = parse(v)
  if int(e) == ARGV[4] then redis.call('HSET', key, ARGV[3], int(e) .. ':0:' .. owner) end
end
return 1
"#;

/// The lease scripts, loaded once per store.
pub(super) struct LeaseScripts {
    partitions: Script,
    table: Script,
    join: Script,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl LeaseScripts {
    pub(super) fn new() -> LeaseScripts {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        LeaseScripts {
            partitions: script(PARTITIONS),
            table: script(TABLE),
            join: script(JOIN),
            acquire: script(ACQUIRE),
            renew: script(RENEW),
            release: script(RELEASE),
        }
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| corrupt(BACKEND, "lease", e))
}

/// A stored lease value `epoch:expires_at:owner`.
fn parse_lease(component: &str, partition: &str, value: &str) -> Result<Lease> {
    let mut parts = value.splitn(3, ':');
    let (Some(epoch), Some(expires_at), Some(owner)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt(BACKEND, "lease", format_args!("malformed lease {value:?}")));
    };
    Ok(Lease {
        component: component.to_owned(),
        partition: number(partition)?,
        owner: owner.to_owned(),
        epoch: number(epoch)?,
        expires_at: number(expires_at)?,
    })
}

#[async_trait]
impl LeaseStore for RedisStore {
    async fn partitions(&self, component: &str, wanted: u32) -> Result<u32> {
        check_partitions(component, wanted)?;
        let mut invocation = self.lease_scripts.partitions.prepare_invoke();
        invocation.arg(&self.prefix).arg(component).arg(wanted);
        let stored: String =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("partitions"))?;
        number(&stored)
    }

    async fn lease_table(&self, component: &str) -> Result<LeaseTable> {
        let mut invocation = self.lease_scripts.table.prepare_invoke();
        invocation.arg(&self.prefix).arg(component);
        let reply: Vec<String> =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("lease_table"))?;
        let [partitions, now, lease_pairs, rest @ ..] = reply.as_slice() else {
            return Err(corrupt(BACKEND, "lease_table", "short reply"));
        };
        let split = number::<usize>(lease_pairs)?.saturating_mul(2).min(rest.len());
        let (lease_fields, member_fields) = rest.split_at(split);
        let mut leases = lease_fields
            .chunks_exact(2)
            .map(|pair| parse_lease(component, &pair[0], &pair[1]))
            .collect::<Result<Vec<_>>>()?;
        leases.sort_by_key(|lease| lease.partition);
        let mut members = member_fields
            .chunks_exact(2)
            .map(|pair| Ok((pair[0].clone(), number::<Millis>(&pair[1])?)))
            .collect::<Result<Vec<_>>>()?;
        members.sort();
        Ok(LeaseTable { partitions: number(partitions)?, leases, members, now: number(now)? })
    }

    async fn join(&self, component: &str, owner: &str, ttl: Duration) -> Result<()> {
        check_owner(owner)?;
        let mut invocation = self.lease_scripts.join.prepare_invoke();
        invocation.arg(&self.prefix).arg(component).arg(owner).arg(ttl_ms(ttl));
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("join"))?;
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
        let mut invocation = self.lease_scripts.acquire.prepare_invoke();
        invocation.arg(&self.prefix).arg(component).arg(partition).arg(owner).arg(ttl_ms(ttl));
        let reply: Vec<String> =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("acquire"))?;
        match reply.as_slice() {
            [tag, epoch, expires_at] if tag == "ok" => Ok(Some(Lease {
                component: component.to_owned(),
                partition,
                owner: owner.to_owned(),
                epoch: number(epoch)?,
                expires_at: number(expires_at)?,
            })),
            [tag] if tag == "held" => Ok(None),
            [tag] if tag == "nocount" => {
                Err(Error::Config(format!("component {component} has no partition count yet")))
            }
            [tag, count] if tag == "range" => Err(Error::Config(format!(
                "component {component} has {count} partitions, not a partition {partition}"
            ))),
            other => Err(corrupt(BACKEND, "acquire", format_args!("unexpected {other:?}"))),
        }
    }

    async fn renew(&self, owner: &str, fences: &[Fence], ttl: Duration) -> Result<Vec<Renewal>> {
        if fences.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.lease_scripts.renew.prepare_invoke();
        invocation.arg(&self.prefix).arg(owner).arg(ttl_ms(ttl));
        for fence in fences {
            invocation.arg(&fence.component).arg(fence.partition).arg(fence.epoch);
        }
        let reply: Vec<String> =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("renew"))?;
        if reply.len() != fences.len() {
            return Err(corrupt(BACKEND, "renew", "one outcome per lease expected"));
        }
        reply
            .iter()
            .map(|expiry| match expiry.as_str() {
                "-1" => Ok(Renewal::Lost),
                at => number::<Millis>(at).map(Renewal::Renewed),
            })
            .collect()
    }

    async fn release(&self, fence: &Fence) -> Result<()> {
        let mut invocation = self.lease_scripts.release.prepare_invoke();
        invocation.arg(&self.prefix).arg(&fence.component).arg(fence.partition).arg(fence.epoch);
        let _: i64 =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("release"))?;
        Ok(())
    }
}
