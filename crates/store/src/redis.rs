//! The Redis store (single node), through the redis crate's `ConnectionManager`.
//!
//! A commit is one Lua script: it first checks every `(instance, seq)` of the batch against the
//! stored events, returns a conflict without writing anything if one exists, then writes the
//! events, summaries, indexes and snapshots, then the batch's outbox, inbox, delivered ids and
//! dead-letter changes. Scripts run atomically, so a second writer with the same seq fails
//! loudly and a conflicting batch writes no message either. Reads of records are one script call per page (snapshot + later
//! events of each instance). The key layout is in `docs/stores.md`.

use crate::common::{
    Cursor, RETENTION_CHUNK, SEARCH_CHUNK, SEARCH_SCAN_BUDGET, Summary, check_batch,
    correlated_limit, corrupt, fold, latest_snapshots, order_key, page_limit, parse_order_key,
    summaries, text_matches, unavailable,
};
use crate::{
    CONNECT_BACKOFF, Durability, PURGE_CHUNK, StoreOptions, with_retry, within_connect_timeout,
};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use std::collections::BTreeSet;
use std::time::Duration;
use xcomponent_core::instance::{EventId, InstanceId, Millis, Status};
use xcomponent_core::message::{
    DeadLetter, ENVELOPE_SCHEMA_VERSION, Envelope, InboxEntry, MessageId,
};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, Result, Retention,
    StoredEvent,
};

mod lease;

const BACKEND: &str = "redis";

/// Version of the key layout, kept in `<prefix>:meta` (field `layout`). Version 2 added the
/// outbox, inbox and dead-letter keys; version 3 stores transitions with what they changed in the
/// data (`changes`) instead of the whole data (`context`, kept by creations and snapshots). An
/// older prefix is upgraded by recording 3: nothing is moved, new keys start empty and events
/// stored with their whole `context` are still read (they fold as a full replace).
const LAYOUT_VERSION: i64 = 4;

/// Reconnection attempts of the connection manager after a lost connection.
const RECONNECT_ATTEMPTS: usize = 5;

/// Time allowed to establish a connection, and to wait for one reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Instances read per script call (load_active, search).
const READ_CHUNK: usize = 1_000;

const COMMIT_SCRIPT: &str = r#"
local p = ARGV[1]
local f = tonumber(ARGV[2])
for k = 0, f - 1 do
  local i = 3 + k * 3
  local v = redis.call('HGET', p .. ':lease:' .. ARGV[i], ARGV[i + 1])
  if not v or string.match(v, '^(%d+):') ~= ARGV[i + 2] then
    return {'fenced', ARGV[i], ARGV[i + 1], ARGV[i + 2]}
  end
end
local n = tonumber(ARGV[3 + f * 3])
local b = 4 + f * 3
for k = 0, n - 1 do
  local i = b + k * 6
  if redis.call('ZCOUNT', p .. ':ev:' .. ARGV[i], ARGV[i + 1], ARGV[i + 1]) > 0 then
    return {'conflict', ARGV[i], ARGV[i + 1]}
  end
end
for k = 0, n - 1 do
  local i = b + k * 6
  redis.call('ZADD', p .. ':ev:' .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  redis.call('ZADD', p .. ':corr:' .. ARGV[i + 3], ARGV[i + 4], ARGV[i + 5] .. '|' .. ARGV[i] .. '|' .. ARGV[i + 1])
end
b = b + n * 6
local m = tonumber(ARGV[b])
b = b + 1
for k = 0, m - 1 do
  local i = b + k * 6
  local id, seq, status, updated, upd, sum = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = p .. ':inst:' .. id
  local cur = tonumber(redis.call('HGET', key, 'seq') or '0')
  if tonumber(seq) > cur then
    local old = redis.call('HGET', key, 'upd')
    if old then redis.call('ZREM', p .. ':updated', old) end
    redis.call('HSET', key, 'seq', seq, 'upd', upd, 'sum', sum)
    redis.call('ZADD', p .. ':updated', 0, upd)
    if status == 'active' then
      redis.call('ZADD', p .. ':active', 0, id)
      redis.call('ZREM', p .. ':finished', id)
    else
      redis.call('ZREM', p .. ':active', id)
      redis.call('ZADD', p .. ':finished', updated, id)
    end
  end
end
b = b + m * 6
local s = tonumber(ARGV[b])
b = b + 1
for k = 0, s - 1 do
  local i = b + k * 3
  local key = p .. ':snap:' .. ARGV[i]
  local cur = tonumber(redis.call('HGET', key, 'seq') or '0')
  if tonumber(ARGV[i + 1]) >= cur then
    redis.call('HSET', key, 'seq', ARGV[i + 1], 'record', ARGV[i + 2])
  end
end
b = b + s * 3
local o = tonumber(ARGV[b])
b = b + 1
for k = 0, o - 1 do
  local i = b + k * 2
  redis.call('HSET', p .. ':out', ARGV[i], ARGV[i + 1])
  redis.call('ZADD', p .. ':out:ids', 0, ARGV[i])
end
b = b + o * 2
local r = tonumber(ARGV[b])
b = b + 1
for k = 0, r - 1 do
  local i = b + k * 3
  if redis.call('HSETNX', p .. ':in:' .. ARGV[i], ARGV[i + 1], ARGV[i + 2]) == 1 then
    redis.call('ZADD', p .. ':in:at', ARGV[i + 2], ARGV[i] .. '|' .. ARGV[i + 1])
  end
end
b = b + r * 3
local d = tonumber(ARGV[b])
b = b + 1
for k = 0, d - 1 do
  redis.call('HDEL', p .. ':out', ARGV[b + k])
  redis.call('ZREM', p .. ':out:ids', ARGV[b + k])
end
b = b + d
local l = tonumber(ARGV[b])
b = b + 1
for k = 0, l - 1 do
  local i = b + k * 2
  redis.call('HSET', p .. ':dead', ARGV[i], ARGV[i + 1])
  redis.call('ZADD', p .. ':dead:ids', 0, ARGV[i])
end
b = b + l * 2
local x = tonumber(ARGV[b])
b = b + 1
for k = 0, x - 1 do
  redis.call('HDEL', p .. ':dead', ARGV[b + k])
  redis.call('ZREM', p .. ':dead:ids', ARGV[b + k])
end
return {'ok'}
"#;

/// A page of `<p>:<list>` (the outbox `out` or the dead letters `dead`) in id order: the ids
/// after ARGV[3] (`-` for the start, else `(<id>`) up to ARGV[4] of them, and their values.
const PAGE_SCRIPT: &str = r#"
local p, list = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYLEX', p .. ':' .. list .. ':ids', ARGV[3], '+', 'LIMIT', 0, tonumber(ARGV[4]))
if #ids == 0 then return {} end
return redis.call('HMGET', p .. ':' .. list, unpack(ids))
"#;

/// One chunk of the inbox purge: among the entries applied before ARGV[2], from the ARGV[3]-th
/// on (the ones kept so far), up to ARGV[4] entries are examined; those whose message is no
/// longer pending are deleted. Returns {deleted, kept, examined}.
const PURGE_INBOX_SCRIPT: &str = r#"
local p = ARGV[1]
local members = redis.call('ZRANGEBYSCORE', p .. ':in:at', '-inf', '(' .. ARGV[2], 'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
local deleted, kept = 0, 0
for _, member in ipairs(members) do
  local bar = string.find(member, '|', 1, true)
  local message, instance = string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
  if redis.call('HEXISTS', p .. ':out', message) == 1 then
    kept = kept + 1
  else
    redis.call('HDEL', p .. ':in:' .. message, instance)
    redis.call('ZREM', p .. ':in:at', member)
    deleted = deleted + 1
  end
end
return {deleted, kept, #members}
"#;

const READ_SCRIPT: &str = r#"
local p = ARGV[1]
local out = {}
for k = 2, #ARGV do
  local snap = redis.call('HMGET', p .. ':snap:' .. ARGV[k], 'seq', 'record')
  local from = '-inf'
  if snap[1] then from = '(' .. snap[1] end
  out[#out + 1] = {snap[2] or '', redis.call('ZRANGEBYSCORE', p .. ':ev:' .. ARGV[k], from, '+inf')}
end
return out
"#;

const RETENTION_SCRIPT: &str = r#"
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. ':finished', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local evs = redis.call('ZRANGE', p .. ':ev:' .. id, 0, -1, 'WITHSCORES')
  for i = 1, #evs, 2 do
    local e = cjson.decode(evs[i])
    redis.call('ZREM', p .. ':corr:' .. e.correlationId, e.id .. '|' .. id .. '|' .. evs[i + 1])
  end
  local upd = redis.call('HGET', p .. ':inst:' .. id, 'upd')
  if upd then redis.call('ZREM', p .. ':updated', upd) end
  redis.call('DEL', p .. ':ev:' .. id, p .. ':snap:' .. id, p .. ':inst:' .. id)
  redis.call('ZREM', p .. ':finished', id)
  redis.call('ZREM', p .. ':active', id)
end
return #ids
"#;

/// Event store in Redis.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    commit_script: Script,
    read_script: Script,
    retention_script: Script,
    page_script: Script,
    purge_inbox_script: Script,
    lease_scripts: lease::LeaseScripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn err(operation: &str) -> impl Fn(redis::RedisError) -> Error + '_ {
    move |e| unavailable(BACKEND, operation, e)
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Config(format!("{BACKEND} commit: value not encodable as JSON: {e}")))
}

fn parse_event(json: &str) -> Result<StoredEvent> {
    serde_json::from_str(json).map_err(|e| corrupt(BACKEND, "event", e))
}

impl RedisStore {
    /// Connects (up to `StoreOptions::connect_attempts` tries, each within `CONNECT_TIMEOUT`) and
    /// checks or records the key layout.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<RedisStore> {
        let prefix = options.key_prefix.clone();
        if prefix.is_empty() || prefix.contains(|c: char| c.is_whitespace() || c == '*') {
            return Err(Error::Config(format!("invalid Redis key prefix {prefix:?}")));
        }
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("invalid Redis store URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_min_delay(CONNECT_BACKOFF)
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        // A plain connection first: it fails with the server's own error (the manager would
        // retry a refused connection itself and hide why), then the manager that reconnects.
        let mut conn = with_retry(BACKEND, "connect", options.connect_attempts, || async {
            within_connect_timeout(client.get_multiplexed_async_connection()).await?;
            within_connect_timeout(ConnectionManager::new_with_config(
                client.clone(),
                config.clone(),
            ))
            .await
        })
        .await?;
        let meta = format!("{prefix}:meta");
        // Records the layout, or upgrades an older one (every change so far only added keys),
        // atomically; refuses a newer one. Returns the layout found before.
        let found: i64 = Script::new(
            r#"
local cur = tonumber(redis.call('HGET', KEYS[1], 'layout') or '0')
if cur < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'layout', ARGV[1]) end
return cur
"#,
        )
        .key(&meta)
        .arg(LAYOUT_VERSION)
        .invoke_async(&mut conn)
        .await
        .map_err(err("open"))?;
        if found > LAYOUT_VERSION {
            return Err(Error::Config(format!(
                "Redis key layout {found} under {prefix:?} is newer than this build supports ({LAYOUT_VERSION})"
            )));
        }
        if found != 0 && found < LAYOUT_VERSION {
            tracing::info!(
                backend = BACKEND,
                prefix,
                from = found,
                to = LAYOUT_VERSION,
                "upgraded the key layout"
            );
        }
        if options.durability == Durability::EachCommit {
            let fsync: Result<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("appendfsync")
                .query_async(&mut conn)
                .await
                .map_err(err("open"));
            if !matches!(fsync.as_deref(), Ok([_, mode]) if mode == "always") {
                tracing::warn!(
                    backend = BACKEND,
                    ?fsync,
                    "EachCommit durability relies on the server's appendfsync=always"
                );
            }
        }
        Ok(RedisStore {
            conn,
            prefix,
            commit_script: Script::new(COMMIT_SCRIPT),
            read_script: Script::new(READ_SCRIPT),
            retention_script: Script::new(RETENTION_SCRIPT),
            page_script: Script::new(PAGE_SCRIPT),
            purge_inbox_script: Script::new(PURGE_INBOX_SCRIPT),
            lease_scripts: lease::LeaseScripts::new(),
        })
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// The values of a page of `list` (`out` or `dead`) after `after`, in id order.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        list: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<T>> {
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let raw: Vec<Option<String>> = self
            .page_script
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(list)
            .arg(start)
            .arg(page_limit(limit))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err(operation))?;
        raw.into_iter()
            .map(|value| {
                let value = value.ok_or_else(|| {
                    corrupt(BACKEND, operation, format_args!("{list}:ids names a missing value"))
                })?;
                Versioned::parse(operation, &value)
            })
            .collect()
    }

    /// Records of `ids` (snapshot + later events), `None` for unknown ids, in the order of `ids`.
    async fn records(&self, ids: &[InstanceId]) -> Result<Vec<Option<InstanceRecord>>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_CHUNK) {
            let mut invocation = self.read_script.prepare_invoke();
            invocation.arg(&self.prefix);
            for id in chunk {
                invocation.arg(id.to_string());
            }
            let rows: Vec<(String, Vec<String>)> =
                invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("restore"))?;
            for (record, events) in rows {
                let snapshot = if record.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::from_str(&record)
                            .map_err(|e| corrupt(BACKEND, "snapshot", e))?,
                    )
                };
                let events = events.iter().map(|e| parse_event(e)).collect::<Result<Vec<_>>>()?;
                out.push(fold(snapshot, &events));
            }
        }
        Ok(out)
    }

    /// Summaries of `ids` (`None` for ids no longer stored), one round trip.
    async fn summaries(&self, ids: &[InstanceId]) -> Result<Vec<Option<Summary>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.key("inst", id), "sum");
        }
        let raw: Vec<Option<String>> =
            pipe.query_async(&mut self.conn.clone()).await.map_err(err("search"))?;
        raw.into_iter()
            .map(|s| {
                s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(BACKEND, "summary", e)))
                    .transpose()
            })
            .collect()
    }
}

#[async_trait]
impl EventStore for RedisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        check_batch(batch)?;
        let mut invocation = self.commit_script.prepare_invoke();
        invocation.arg(&self.prefix).arg(batch.fences.len());
        for fence in &batch.fences {
            invocation.arg(&fence.component).arg(fence.partition).arg(fence.epoch);
        }
        invocation.arg(batch.events.len());
        for e in &batch.events {
            invocation
                .arg(e.instance_id.to_string())
                .arg(e.seq)
                .arg(to_json(e)?)
                .arg(e.correlation_id.to_string())
                .arg(e.timestamp)
                .arg(e.id.to_string());
        }
        let sums = summaries(batch);
        invocation.arg(sums.len());
        for s in &sums {
            invocation
                .arg(s.id.to_string())
                .arg(s.seq)
                .arg(s.status.as_str())
                .arg(s.updated_at)
                .arg(order_key(s.updated_at, s.id))
                .arg(to_json(s)?);
        }
        let snapshots = latest_snapshots(batch);
        invocation.arg(snapshots.len());
        for s in snapshots {
            invocation.arg(s.id.to_string()).arg(s.seq).arg(to_json(s)?);
        }
        invocation.arg(batch.outbox.len());
        for m in &batch.outbox {
            invocation.arg(m.id.to_string()).arg(to_json(&Versioned::of(m))?);
        }
        invocation.arg(batch.inbox.len());
        for e in &batch.inbox {
            invocation
                .arg(e.message_id.to_string())
                .arg(e.instance_id.to_string())
                .arg(e.applied_at);
        }
        invocation.arg(batch.delivered.len());
        for id in &batch.delivered {
            invocation.arg(id.to_string());
        }
        invocation.arg(batch.dead_letters.len());
        for d in &batch.dead_letters {
            invocation.arg(d.message.id.to_string()).arg(to_json(&Versioned::of(d))?);
        }
        invocation.arg(batch.dead_letters_removed.len());
        for id in &batch.dead_letters_removed {
            invocation.arg(id.to_string());
        }
        let reply: Vec<String> =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("commit"))?;
        match reply.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            [tag, id, seq] if tag == "conflict" => Err(Error::Conflict {
                instance_id: id.parse().map_err(|e| corrupt(BACKEND, "commit reply", e))?,
                seq: seq.parse().map_err(|e| corrupt(BACKEND, "commit reply", e))?,
            }),
            [tag, component, partition, epoch] if tag == "fenced" => Err(Error::Fenced {
                component: component.clone(),
                partition: partition.parse().map_err(|e| corrupt(BACKEND, "commit reply", e))?,
                epoch: epoch.parse().map_err(|e| corrupt(BACKEND, "commit reply", e))?,
            }),
            other => Err(corrupt(BACKEND, "commit reply", format_args!("unexpected {other:?}"))),
        }
    }

    async fn load_active(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>> {
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let count = isize::try_from(limit).unwrap_or(isize::MAX);
        let ids: Vec<String> = self
            .conn
            .clone()
            .zrangebylex_limit(format!("{}:active", self.prefix), start, "+", 0, count)
            .await
            .map_err(err("load_active"))?;
        let ids = ids
            .iter()
            .map(|id| id.parse().map_err(|e| corrupt(BACKEND, "active index", e)))
            .collect::<Result<Vec<InstanceId>>>()?;
        let records = self.records(&ids).await?;
        Ok(records.into_iter().flatten().filter(|r| r.status == Status::Active).collect())
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        Ok(self.records(&[id]).await?.pop().flatten())
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        let raw: Vec<String> =
            self.conn.clone().zrange(self.key("ev", id), 0, -1).await.map_err(err("history"))?;
        raw.iter().map(|e| parse_event(e)).collect()
    }

    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        let limit = page_limit(query.limit);
        let mut position = Cursor::of(query)?.map(|c| order_key(c.updated_at, c.id));
        let index = format!("{}:updated", self.prefix);
        let mut items: Vec<InstanceRecord> = Vec::new();
        let mut scanned = 0;
        while items.len() <= limit && scanned < SEARCH_SCAN_BUDGET {
            let start = position.as_ref().map_or_else(|| "+".to_owned(), |p| format!("({p}"));
            let keys: Vec<String> = self
                .conn
                .clone()
                .zrevrangebylex_limit(&index, start, "-", 0, SEARCH_CHUNK as isize)
                .await
                .map_err(err("search"))?;
            let Some(last) = keys.last() else {
                position = None;
                break;
            };
            position = Some(last.clone());
            scanned += keys.len();
            let ids = keys
                .iter()
                .map(|k| {
                    parse_order_key(k)
                        .map(|(_, id)| id)
                        .ok_or_else(|| corrupt(BACKEND, "search index", k))
                })
                .collect::<Result<Vec<_>>>()?;
            let summaries = self.summaries(&ids).await?;
            let wanted: Vec<InstanceId> = summaries
                .into_iter()
                .flatten()
                .filter(|s| s.matches(query))
                .map(|s| s.id)
                .collect();
            for record in self.records(&wanted).await?.into_iter().flatten() {
                if items.len() <= limit
                    && query.text.as_deref().is_none_or(|t| text_matches(&record, t))
                {
                    items.push(record);
                }
            }
            if keys.len() < SEARCH_CHUNK {
                position = None;
                break;
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| Cursor::after(r.updated_at, r.id).encode())
        } else {
            // Budget spent before the page filled: resume after the last entry examined.
            position
                .as_deref()
                .and_then(parse_order_key)
                .map(|(at, id)| Cursor::after(at, id).encode())
        };
        Ok(Page { items, next_cursor })
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        let stop = isize::try_from(correlated_limit(limit)).unwrap_or(isize::MAX) - 1;
        let refs: Vec<String> = self
            .conn
            .clone()
            .zrange(self.key("corr", correlation_id), 0, stop)
            .await
            .map_err(err("correlated"))?;
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for member in &refs {
            let mut parts = member.split('|').skip(1);
            let (Some(id), Some(seq)) = (parts.next(), parts.next()) else {
                return Err(corrupt(BACKEND, "correlation index", member));
            };
            pipe.zrangebyscore(self.key("ev", id), seq, seq);
        }
        let found: Vec<Vec<String>> =
            pipe.query_async(&mut self.conn.clone()).await.map_err(err("correlated"))?;
        found.iter().flatten().map(|e| parse_event(e)).collect()
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64> {
        let Some(keep) = retention.keep_finished_ms else { return Ok(0) };
        let cutoff = now.saturating_sub(keep);
        let mut total = 0;
        loop {
            let purged: u64 = self
                .retention_script
                .prepare_invoke()
                .arg(&self.prefix)
                .arg(cutoff)
                .arg(RETENTION_CHUNK)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err("apply_retention"))?;
            total += purged;
            if purged < RETENTION_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn ping(&self) -> Result<()> {
        let _: String =
            redis::cmd("PING").query_async(&mut self.conn.clone()).await.map_err(err("ping"))?;
        Ok(())
    }

    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>> {
        self.page("pending_messages", "out", after, limit).await
    }

    async fn inbox_entries(&self, messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
        let wanted: BTreeSet<MessageId> = messages.iter().copied().collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for message in &wanted {
            pipe.hgetall(self.key("in", message));
        }
        let found: Vec<Vec<(String, Millis)>> =
            pipe.query_async(&mut self.conn.clone()).await.map_err(err("inbox_entries"))?;
        let mut out = Vec::new();
        for (message_id, entries) in wanted.into_iter().zip(found) {
            let mut entries = entries
                .into_iter()
                .map(|(instance, applied_at)| {
                    Ok(InboxEntry {
                        message_id,
                        instance_id: instance
                            .parse()
                            .map_err(|e| corrupt(BACKEND, "inbox entry", e))?,
                        applied_at,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            entries.sort_by_key(|e| e.instance_id);
            out.extend(entries);
        }
        Ok(out)
    }

    async fn purge_inbox(&self, before: Millis) -> Result<u64> {
        let (mut total, mut offset) = (0, 0);
        loop {
            let (deleted, kept, examined): (u64, u64, u64) = self
                .purge_inbox_script
                .prepare_invoke()
                .arg(&self.prefix)
                .arg(before)
                .arg(offset)
                .arg(PURGE_CHUNK)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err("purge_inbox"))?;
            total += deleted;
            offset += kept;
            if examined < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.page("dead_letters", "dead", after, limit).await
    }

    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>> {
        let raw: Option<String> = self
            .conn
            .clone()
            .hget(format!("{}:dead", self.prefix), message.to_string())
            .await
            .map_err(err("dead_letter"))?;
        raw.map(|value| Versioned::parse("dead_letter", &value)).transpose()
    }

    fn leases(&self) -> Option<&dyn xcomponent_core::lease::LeaseStore> {
        Some(self)
    }
}

/// A stored envelope or dead letter with the envelope layout version it was written with.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned<T> {
    /// `ENVELOPE_SCHEMA_VERSION` at write time.
    schema_version: u32,
    value: T,
}

impl<'a, T> Versioned<&'a T> {
    fn of(value: &'a T) -> Versioned<&'a T> {
        Versioned { schema_version: ENVELOPE_SCHEMA_VERSION, value }
    }
}

impl Versioned<()> {
    /// Decodes a stored value; a layout newer than this build is `Corrupt`, not guessed at.
    fn parse<T: serde::de::DeserializeOwned>(operation: &str, text: &str) -> Result<T> {
        let stored: Versioned<T> =
            serde_json::from_str(text).map_err(|e| corrupt(BACKEND, operation, e))?;
        if stored.schema_version > ENVELOPE_SCHEMA_VERSION {
            return Err(corrupt(
                BACKEND,
                operation,
                format_args!(
                    "envelope schema version {} is not supported (this build reads up to {ENVELOPE_SCHEMA_VERSION})",
                    stored.schema_version
                ),
            ));
        }
        Ok(stored.value)
    }
}
