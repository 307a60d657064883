//! Store reads over the bus, for a dashboard without the runtimes' store: history, instance
//! records, searches, correlated events and dead letters, asked on `fsm:queries:store` and
//! answered by every runtime from its own store on `fsm:responses:store`.
//!
//! The dashboard's side (`BusReads`) is an `EventStore` that only reads: it publishes a read,
//! gathers the answers until every known runtime answered or `ClusterOptions::reply_timeout`
//! passed, and merges them (runtimes that share a store answer alike; the copies are dropped).
//! A search is merged page by page: each runtime returns its first page past the cursor, most
//! recently updated first; the merged page stops at the highest point where a runtime with more
//! results stopped, so nothing is skipped, and its cursor continues from there.
//!
//! A runtime answers at most `MAX_CONCURRENT_READS` reads at once (the others are answered as
//! busy) and at most `MAX_READ_ANSWER_BYTES` per answer (a longer page is cut, with a cursor to
//! go on; a longer history is cut and marked incomplete).

use super::monitor::{message, publish};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use xcomponent_core::bus::{Bus, channels};
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, MAX_PAGE_SIZE, Page, Result,
    Retention, StoredEvent,
};

/// Largest answer a runtime publishes, in bytes of JSON (NATS refuses messages over its
/// `max_payload`, 1 MiB by default).
pub const MAX_READ_ANSWER_BYTES: usize = 768 * 1024;
/// Reads one runtime answers at once; past it a read is answered as busy.
pub const MAX_CONCURRENT_READS: usize = 8;
/// Reads a dashboard waits for at once; past it a read fails at once.
pub const MAX_PENDING_READS: usize = 1_000;
/// Answers a dashboard keeps for one read (one per runtime; more are ignored).
const MAX_ANSWERS_PER_READ: usize = 256;

/// One read, as published.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub(crate) enum StoreRead {
    Instance { id: InstanceId },
    History { id: InstanceId },
    Search { query: InstanceQuery },
    Correlated { correlation: EventId, limit: usize },
    DeadLetters { after: Option<MessageId>, limit: usize },
    DeadLetter { id: MessageId },
}

/// One runtime's answer to a read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum ReadAnswer {
    Instance { record: Option<InstanceRecord> },
    Events { events: Vec<StoredEvent>, complete: bool },
    Page { page: Page<InstanceRecord> },
    DeadLetters { letters: Vec<DeadLetter> },
    DeadLetter { letter: Option<DeadLetter> },
    Failed { error: String },
}

/// The runtime's side: reads answered from its store, a bounded number at once.
pub(crate) struct ReadAnswerer {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    runtime_id: String,
    slots: Arc<Semaphore>,
}

impl ReadAnswerer {
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn Bus>, runtime_id: String) -> Self {
        ReadAnswerer {
            store,
            bus,
            runtime_id,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
        }
    }

    /// Answers a published read in a task of its own (the monitor loop never waits on a store).
    pub fn answer(&self, body: &Map<String, Value>) {
        let Some(request_id) = body.get("requestId").and_then(Value::as_str).map(str::to_owned)
        else {
            return;
        };
        let read = serde_json::from_value::<StoreRead>(Value::Object(body.clone()));
        let (store, bus, runtime_id) =
            (self.store.clone(), self.bus.clone(), self.runtime_id.clone());
        let permit = self.slots.clone().try_acquire_owned();
        tokio::spawn(async move {
            let answer = match (read, permit) {
                (Err(error), _) => {
                    ReadAnswer::Failed { error: format!("unreadable read: {error}") }
                }
                (Ok(_), Err(_)) => {
                    ReadAnswer::Failed { error: "busy: too many reads at once".into() }
                }
                (Ok(read), Ok(_permit)) => fit(perform(store.as_ref(), read).await),
            };
            let fields =
                json!({"requestId": request_id, "runtimeId": runtime_id, "answer": answer});
            publish(bus.as_ref(), channels::STORE_READ_RESPONSE, fields).await;
        });
    }
}

async fn perform(store: &dyn EventStore, read: StoreRead) -> ReadAnswer {
    let failed = |error: Error| ReadAnswer::Failed { error: error.to_string() };
    match read {
        StoreRead::Instance { id } => {
            store.instance(id).await.map_or_else(failed, |record| ReadAnswer::Instance { record })
        }
        StoreRead::History { id } => store
            .history(id)
            .await
            .map_or_else(failed, |events| ReadAnswer::Events { events, complete: true }),
        StoreRead::Search { query } => {
            store.search(&query).await.map_or_else(failed, |page| ReadAnswer::Page { page })
        }
        StoreRead::Correlated { correlation, limit } => store
            .correlated(correlation, limit.min(MAX_PAGE_SIZE))
            .await
            .map_or_else(failed, |events| ReadAnswer::Events { events, complete: true }),
        StoreRead::DeadLetters { after, limit } => store
            .dead_letters(after, limit.min(MAX_PAGE_SIZE))
            .await
            .map_or_else(failed, |letters| ReadAnswer::DeadLetters { letters }),
        StoreRead::DeadLetter { id } => store
            .dead_letter(id)
            .await
            .map_or_else(failed, |letter| ReadAnswer::DeadLetter { letter }),
    }
}

/// The answer cut to `MAX_READ_ANSWER_BYTES`: items dropped from the end (half of them at a
/// time), a page's cursor moved to its last item, a list of events marked incomplete.
fn fit(mut answer: ReadAnswer) -> ReadAnswer {
    loop {
        let size = serde_json::to_vec(&answer).map_or(usize::MAX, |bytes| bytes.len());
        if size <= MAX_READ_ANSWER_BYTES {
            return answer;
        }
        let cut = |length: usize| length / 2;
        match &mut answer {
            ReadAnswer::Events { events, complete } if events.len() > 1 => {
                events.truncate(cut(events.len()));
                *complete = false;
            }
            ReadAnswer::Page { page } if page.items.len() > 1 => {
                page.items.truncate(cut(page.items.len()));
                page.next_cursor = page.items.last().map(cursor_after);
            }
            ReadAnswer::DeadLetters { letters } if letters.len() > 1 => {
                letters.truncate(cut(letters.len()));
            }
            _ => {
                return ReadAnswer::Failed {
                    error: format!("the answer is larger than {MAX_READ_ANSWER_BYTES} bytes"),
                };
            }
        }
    }
}

/// The search cursor that continues after `record` (the stores' `updated_at_id` form).
fn cursor_after(record: &InstanceRecord) -> String {
    format!("{}_{}", record.updated_at, record.id)
}

/// The dashboard's side: an `EventStore` whose reads go to the runtimes over the bus.
pub struct BusReads {
    bus: Arc<dyn Bus>,
    timeout: Duration,
    /// How many runtimes are expected to answer (those the cluster view knows now).
    expected: Box<dyn Fn() -> usize + Send + Sync>,
    pending: Mutex<HashMap<String, mpsc::Sender<ReadAnswer>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BusReads {
    pub(crate) fn new(
        bus: Arc<dyn Bus>,
        timeout: Duration,
        expected: Box<dyn Fn() -> usize + Send + Sync>,
    ) -> BusReads {
        BusReads { bus, timeout, expected, pending: Mutex::new(HashMap::new()) }
    }

    /// An answer published on `fsm:responses:store`.
    pub(crate) fn on_answer(&self, body: &Value) {
        let Some(request_id) = body["requestId"].as_str() else { return };
        let Some(waiter) = lock(&self.pending).get(request_id).cloned() else { return };
        if let Ok(answer) = serde_json::from_value::<ReadAnswer>(body["answer"].clone()) {
            let _ = waiter.try_send(answer);
        }
    }

    /// Publishes `read` and gathers the answers: every expected runtime's, those that came
    /// within the timeout, or up to the first that is `enough` on its own (one instance lives in
    /// one store: a runtime that is down must not delay it). Failed answers are logged and left
    /// out; none at all is an error.
    async fn ask(
        &self,
        read: StoreRead,
        enough: impl Fn(&ReadAnswer) -> bool,
    ) -> Result<Vec<ReadAnswer>> {
        let expected = (self.expected)();
        if expected == 0 {
            return Ok(Vec::new());
        }
        let request_id = uuid::Uuid::now_v7().to_string();
        let (sender, mut answers) = mpsc::channel(MAX_ANSWERS_PER_READ);
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= MAX_PENDING_READS {
                return Err(Error::Unavailable("too many store reads waiting for runtimes".into()));
            }
            pending.insert(request_id.clone(), sender);
        }
        let mut fields = serde_json::to_value(&read).unwrap_or_else(|_| json!({}));
        fields["requestId"] = json!(request_id);
        let sent = self.bus.publish(channels::STORE_READ, &message(fields)).await;
        let mut gathered = Vec::new();
        let mut failures = Vec::new();
        if sent.is_ok() {
            let deadline = tokio::time::Instant::now() + self.timeout;
            while gathered.len() + failures.len() < expected {
                match tokio::time::timeout_at(deadline, answers.recv()).await {
                    Ok(Some(ReadAnswer::Failed { error })) => failures.push(error),
                    Ok(Some(answer)) if enough(&answer) => {
                        gathered.push(answer);
                        break;
                    }
                    Ok(Some(answer)) => gathered.push(answer),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        lock(&self.pending).remove(&request_id);
        if let Err(error) = sent {
            return Err(Error::Unavailable(format!("the bus refused the read: {error}")));
        }
        if !failures.is_empty() {
            tracing::warn!(?failures, "Some runtimes could not answer a store read.");
        }
        if gathered.is_empty() && !failures.is_empty() {
            return Err(Error::Unavailable(failures.join("; ")));
        }
        Ok(gathered)
    }
}

fn writes_refused() -> Error {
    Error::Config("the dashboard reads the runtimes' stores over the bus and writes nothing".into())
}

#[async_trait]
impl EventStore for BusReads {
    fn backend(&self) -> &'static str {
        "runtimes"
    }

    async fn commit(&self, _batch: &CommitBatch) -> Result<()> {
        Err(writes_refused())
    }

    async fn load_active(
        &self,
        _after: Option<InstanceId>,
        _limit: usize,
    ) -> Result<Vec<InstanceRecord>> {
        Err(writes_refused())
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        let found =
            |answer: &ReadAnswer| matches!(answer, ReadAnswer::Instance { record: Some(_) });
        let answers = self.ask(StoreRead::Instance { id }, found).await?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                ReadAnswer::Instance { record } => record,
                _ => None,
            })
            .max_by_key(|record| (record.seq, record.updated_at)))
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        let complete = |answer: &ReadAnswer| matches!(answer, ReadAnswer::Events { events, complete: true } if !events.is_empty());
        let answers = self.ask(StoreRead::History { id }, complete).await?;
        Ok(longest_events(answers))
    }

    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        let answers = self.ask(StoreRead::Search { query: query.clone() }, |_| false).await?;
        let pages = answers.into_iter().filter_map(|answer| match answer {
            ReadAnswer::Page { page } => Some(page),
            _ => None,
        });
        Ok(merge_pages(pages, query.limit.clamp(1, MAX_PAGE_SIZE)))
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        let read = StoreRead::Correlated { correlation: correlation_id, limit };
        let answers = self.ask(read, |_| false).await?;
        let mut events: Vec<StoredEvent> = answers
            .into_iter()
            .flat_map(|answer| match answer {
                ReadAnswer::Events { events, .. } => events,
                _ => Vec::new(),
            })
            .collect();
        events.sort_by_key(|event| (event.timestamp, event.id));
        events.dedup_by_key(|event| event.id);
        events.truncate(limit);
        Ok(events)
    }

    async fn apply_retention(&self, _retention: Retention, _now: Millis) -> Result<u64> {
        Err(writes_refused())
    }

    async fn ping(&self) -> Result<()> {
        self.bus.ping().await.map_err(|error| Error::Unavailable(error.to_string()))
    }

    async fn pending_messages(
        &self,
        _after: Option<MessageId>,
        _limit: usize,
    ) -> Result<Vec<Envelope>> {
        Err(writes_refused())
    }

    async fn inbox_entries(&self, _messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
        Err(writes_refused())
    }

    async fn purge_inbox(&self, _before: Millis) -> Result<u64> {
        Err(writes_refused())
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let answers = self.ask(StoreRead::DeadLetters { after, limit }, |_| false).await?;
        let mut letters: Vec<DeadLetter> = answers
            .into_iter()
            .flat_map(|answer| match answer {
                ReadAnswer::DeadLetters { letters } => letters,
                _ => Vec::new(),
            })
            .collect();
        letters.sort_by_key(|letter| letter.message.id);
        letters.dedup_by_key(|letter| letter.message.id);
        letters.truncate(limit.min(MAX_PAGE_SIZE));
        Ok(letters)
    }

    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>> {
        let found =
            |answer: &ReadAnswer| matches!(answer, ReadAnswer::DeadLetter { letter: Some(_) });
        let answers = self.ask(StoreRead::DeadLetter { id: message }, found).await?;
        Ok(answers.into_iter().find_map(|answer| match answer {
            ReadAnswer::DeadLetter { letter } => letter,
            _ => None,
        }))
    }
}

/// The longest list of events among the answers (the runtime whose store holds the instance;
/// runtimes sharing a store answer the same list).
fn longest_events(answers: Vec<ReadAnswer>) -> Vec<StoredEvent> {
    answers
        .into_iter()
        .filter_map(|answer| match answer {
            ReadAnswer::Events { events, .. } => Some(events),
            _ => None,
        })
        .max_by_key(Vec::len)
        .unwrap_or_default()
}

/// Merges the runtimes' pages (each most recently updated first) into one page of at most
/// `limit`: it stops where the runtime with more results that stopped highest stopped, so a
/// result none of them returned yet cannot fall before the cursor.
fn merge_pages(
    pages: impl Iterator<Item = Page<InstanceRecord>>,
    limit: usize,
) -> Page<InstanceRecord> {
    let key = |record: &InstanceRecord| (record.updated_at, record.id);
    let mut items = Vec::new();
    let mut boundary = None;
    for page in pages {
        if page.next_cursor.is_some()
            && let Some(last) = page.items.last()
        {
            boundary = boundary.max(Some(key(last)));
        }
        items.extend(page.items);
    }
    items.sort_by_key(|record| std::cmp::Reverse(key(record)));
    items.dedup_by_key(|record| record.id);
    if let Some(boundary) = boundary {
        items.retain(|record| key(record) >= boundary);
    }
    let cut = boundary.is_some() || items.len() > limit;
    items.truncate(limit);
    let next_cursor = if cut { items.last().map(cursor_after) } else { None };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcomponent_core::instance::Status;

    fn record(updated_at: Millis, n: u128) -> InstanceRecord {
        InstanceRecord {
            id: InstanceId(uuid::Uuid::from_u128(n)),
            component: "C".into(),
            machine: "M".into(),
            state: "S".into(),
            status: Status::Active,
            entry_point: false,
            seq: 1,
            created_at: updated_at,
            updated_at,
            context: Map::new(),
            parent: None,
            timers: Vec::new(),
            correlation_id: EventId(uuid::Uuid::from_u128(n)),
        }
    }

    fn page(items: Vec<InstanceRecord>, more: bool) -> Page<InstanceRecord> {
        let next_cursor = more.then(|| items.last().map(cursor_after)).flatten();
        Page { items, next_cursor }
    }

    fn times(page: &Page<InstanceRecord>) -> Vec<Millis> {
        page.items.iter().map(|record| record.updated_at).collect()
    }

    #[test]
    fn a_merged_page_stops_where_a_runtime_with_more_stopped() {
        // Runtime A has 10, 8, 6 and more below; runtime B has 9, 7, 5, 3 and nothing more.
        let a = page(vec![record(10, 1), record(8, 2), record(6, 3)], true);
        let b = page(vec![record(9, 4), record(7, 5), record(5, 6), record(3, 7)], false);
        let merged = merge_pages([a, b].into_iter(), 10);
        assert_eq!(times(&merged), [10, 9, 8, 7, 6], "5 and 3 wait: A may hold results above them");
        assert_eq!(merged.next_cursor.as_deref(), Some(cursor_after(&record(6, 3)).as_str()));
    }

    #[test]
    fn a_merged_page_keeps_the_limit_and_drops_copies_from_a_shared_store() {
        let shared = vec![record(4, 1), record(3, 2), record(2, 3)];
        let merged = merge_pages([page(shared.clone(), false), page(shared, false)].into_iter(), 2);
        assert_eq!(times(&merged), [4, 3]);
        assert!(merged.next_cursor.is_some(), "one more result remains");
        let all = merge_pages([page(vec![record(4, 1)], false)].into_iter(), 2);
        assert_eq!((times(&all), all.next_cursor), (vec![4], None));
    }

    #[test]
    fn an_answer_too_large_is_cut_with_a_cursor_to_go_on() {
        let big = |n| {
            let mut record = record(1000 - n as Millis, n);
            record.context.insert("blob".into(), json!("x".repeat(100 * 1024)));
            record
        };
        let items: Vec<_> = (1..=20).map(big).collect();
        let ReadAnswer::Page { page } = fit(ReadAnswer::Page { page: page(items, false) }) else {
            panic!("still a page");
        };
        assert!(!page.items.is_empty() && page.items.len() < 20, "{}", page.items.len());
        assert_eq!(page.next_cursor, page.items.last().map(cursor_after));
    }
}
