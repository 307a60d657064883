//! The Redis store (single node), through the redis crate's `ConnectionManager`.
//!
//! A commit is one Lua script: it first checks every `(instance, seq)` of the batch against the
//! stored events, returns a conflict without writing anything if one exists, then writes the
//! events, summaries, indexes and snapshots. Scripts run atomically, so a second writer with
//! the same seq fails loudly. Reads of records are one script call per page (snapshot + later
//! events of each instance). The key layout is in `docs/stores.md`.

use crate::common::{
    Cursor, RETENTION_CHUNK, Summary, check_batch, correlated_limit, corrupt, fold,
    latest_snapshots, order_key, page_limit, parse_order_key, summaries, text_matches, unavailable,
};
use crate::{CONNECT_BACKOFF, Durability, StoreOptions, with_retry};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use std::time::Duration;
use xcomponent_core::instance::{EventId, InstanceId, Millis, Status};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, Result, Retention,
    StoredEvent,
};

const BACKEND: &str = "redis";

/// Version of the key layout, kept in `<prefix>:meta` (field `layout`).
const LAYOUT_VERSION: i64 = 1;

/// Reconnection attempts of the connection manager after a lost connection.
const RECONNECT_ATTEMPTS: usize = 5;

/// Time allowed to establish a connection, and to wait for one reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Instances read per script call (load_active, search).
const READ_CHUNK: usize = 1_000;

/// Search entries examined per round trip, and at most per `search` call: a page may come back
/// short with a cursor when the filters are very selective.
const SEARCH_CHUNK: usize = 500;
const SEARCH_SCAN_BUDGET: usize = 50_000;

const COMMIT_SCRIPT: &str = r#"
local p = ARGV[1]
local n = tonumber(ARGV[2])
local b = 3
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
return {'ok'}
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
    /// Connects (retrying up to `CONNECT_ATTEMPTS` times) and checks or records the key layout.
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
        let mut conn = with_retry(BACKEND, "connect", || {
            ConnectionManager::new_with_config(client.clone(), config.clone())
        })
        .await?;
        let meta = format!("{prefix}:meta");
        let _: bool = conn.hset_nx(&meta, "layout", LAYOUT_VERSION).await.map_err(err("open"))?;
        let layout: Option<i64> = conn.hget(&meta, "layout").await.map_err(err("open"))?;
        if layout.is_some_and(|v| v > LAYOUT_VERSION) {
            return Err(Error::Config(format!(
                "Redis key layout {layout:?} under {prefix:?} is newer than this build supports ({LAYOUT_VERSION})"
            )));
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
        })
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.prefix)
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
        invocation.arg(&self.prefix).arg(batch.events.len());
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
        let reply: Vec<String> =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(err("commit"))?;
        match reply.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            [tag, id, seq] if tag == "conflict" => Err(Error::Conflict {
                instance_id: id.parse().map_err(|e| corrupt(BACKEND, "commit reply", e))?,
                seq: seq.parse().map_err(|e| corrupt(BACKEND, "commit reply", e))?,
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
}
