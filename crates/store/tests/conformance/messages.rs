//! Conformance checks on the outbox, the inbox and the dead-letter list: stored with the events
//! of their batch or not at all, listed in id order by pages, removed by id, and envelopes that
//! come back exactly as written.
//!
//! Pending messages and dead letters are global to a store (not per component), so every check
//! looks only at the ids it made, and leaves nothing pending or dead behind.

use super::*;
use xcomponent_core::instance::ParentRef;
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::message::{
    DeadLetter, DeadLetterKind, Envelope, InboxEntry, MessageBody, MessageId, SelectorSpec,
};
use xcomponent_core::model::Operator;
use xcomponent_core::store::Error;

/// A fresh message id (UUID v7: ids made later sort later).
pub fn message_id() -> MessageId {
    MessageId(uuid::Uuid::now_v7())
}

/// A send to `instance` of `component`, with a fresh id.
pub fn send(component: &str, instance: InstanceId) -> Envelope {
    Envelope {
        id: message_id(),
        component: component.to_owned(),
        body: MessageBody::Send {
            instance_id: instance,
            event: "PING".to_owned(),
            payload: object(json!({ "n": 1 })),
        },
        causation_id: None,
        correlation_id: None,
        depth: 0,
        source_component: None,
        source_instance: None,
        created_at: T0,
    }
}

/// A dead letter of `message`.
pub fn dead(message: Envelope, kind: DeadLetterKind, reason: &str, attempts: u32) -> DeadLetter {
    DeadLetter { message, kind, reason: reason.to_owned(), attempts, dead_at: T0 + 99 }
}

/// Every pending message among `ids`, read page by page (`page` per call); checks that ids
/// strictly increase across the whole list.
pub async fn pending_among(
    store: &dyn EventStore,
    ids: &[MessageId],
    page: usize,
) -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let messages = store.pending_messages(after, page).await.unwrap();
        assert!(messages.len() <= page, "[{}] pending_messages exceeds its limit", store.backend());
        for pair in messages.windows(2) {
            assert!(pair[0].id < pair[1].id, "[{}] pending_messages in id order", store.backend());
        }
        let Some(last) = messages.last() else { break };
        if let Some(previous) = after {
            assert!(previous < last.id, "[{}] pages move forward", store.backend());
        }
        after = Some(last.id);
        out.extend(messages.into_iter().filter(|m| ids.contains(&m.id)));
    }
    out
}

/// Every dead letter among `ids`, read page by page, in id order.
pub async fn dead_among(store: &dyn EventStore, ids: &[MessageId], page: usize) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let letters = store.dead_letters(after, page).await.unwrap();
        assert!(letters.len() <= page, "[{}] dead_letters exceeds its limit", store.backend());
        for pair in letters.windows(2) {
            assert!(
                pair[0].message.id < pair[1].message.id,
                "[{}] dead_letters in id order",
                store.backend()
            );
        }
        let Some(last) = letters.last() else { break };
        after = Some(last.message.id);
        out.extend(letters.into_iter().filter(|d| ids.contains(&d.message.id)));
    }
    out
}

fn sorted(mut entries: Vec<InboxEntry>) -> Vec<InboxEntry> {
    entries.sort_by_key(|e| (e.message_id, e.instance_id));
    entries
}

/// A batch with a sequence conflict writes none of its outbox, inbox or dead-letter changes.
pub async fn messages_are_all_or_nothing(store: &dyn EventStore) {
    let name = store.backend();
    let stored = chain("c_msg_atomic", 1, T0);
    let kept = send("c_msg_atomic", stored[0].instance_id);
    let kept_dead =
        dead(send("c_msg_atomic", stored[0].instance_id), DeadLetterKind::Failed, "x", 3);
    commit(
        store,
        &CommitBatch {
            events: stored.clone(),
            outbox: vec![kept.clone()],
            dead_letters: vec![kept_dead.clone()],
            ..Default::default()
        },
    )
    .await;

    let produced = send("c_msg_atomic", stored[0].instance_id);
    let applied =
        InboxEntry { message_id: message_id(), instance_id: stored[0].instance_id, applied_at: T0 };
    let new_dead =
        dead(send("c_msg_atomic", stored[0].instance_id), DeadLetterKind::Rejected, "y", 1);
    let mut duplicate = stored[0].clone();
    duplicate.id = EventId(uuid::Uuid::now_v7());
    let other = created("c_msg_atomic", InstanceId(uuid::Uuid::now_v7()), "S1", T0, json!({}));
    let result = store
        .commit(&CommitBatch {
            events: vec![other, duplicate],
            outbox: vec![produced.clone()],
            inbox: vec![applied],
            delivered: vec![kept.id],
            dead_letters: vec![new_dead.clone()],
            dead_letters_removed: vec![kept_dead.message.id],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(result, Err(Error::Conflict { .. })),
        "[{name}] expected a conflict, got {result:?}"
    );

    let ids = [kept.id, produced.id];
    assert_eq!(
        pending_among(store, &ids, 100).await,
        vec![kept.clone()],
        "[{name}] outbox untouched"
    );
    assert!(
        store.inbox_entries(&[applied.message_id]).await.unwrap().is_empty(),
        "[{name}] no inbox entry"
    );
    assert_eq!(
        store.dead_letter(new_dead.message.id).await.unwrap(),
        None,
        "[{name}] no dead letter"
    );
    assert_eq!(
        store.dead_letter(kept_dead.message.id).await.unwrap(),
        Some(kept_dead.clone()),
        "[{name}] dead letter not removed"
    );

    // Clean up: the same changes without the conflict go through.
    commit(
        store,
        &CommitBatch {
            delivered: vec![kept.id],
            dead_letters_removed: vec![kept_dead.message.id],
            ..Default::default()
        },
    )
    .await;
    assert!(pending_among(store, &ids, 100).await.is_empty());
}

/// Pending messages are listed in id order, by pages (`after`, `limit`), whatever order the
/// batches stored them in; a delivered id removes its message, an unknown one is ignored, and a
/// message produced and delivered in one batch leaves nothing.
pub async fn pending_messages_in_id_order(store: &dyn EventStore) {
    let name = store.backend();
    let instance = InstanceId(uuid::Uuid::now_v7());
    let messages: Vec<Envelope> = (0..7).map(|_| send("c_msg_pending", instance)).collect();
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    let events = chain("c_msg_pending", 2, T0);
    // Two batches, each holding its messages out of order.
    let first: Vec<Envelope> = [4, 0, 2].iter().map(|&i| messages[i].clone()).collect();
    let second: Vec<Envelope> = [6, 1, 5, 3].iter().map(|&i| messages[i].clone()).collect();
    commit(
        store,
        &CommitBatch { events: vec![events[0].clone()], outbox: first, ..Default::default() },
    )
    .await;
    commit(
        store,
        &CommitBatch { events: vec![events[1].clone()], outbox: second, ..Default::default() },
    )
    .await;

    for page in [1, 3, 1000] {
        assert_eq!(pending_among(store, &ids, page).await, messages, "[{name}] pages of {page}");
    }
    // Nothing else was produced between these ids: a page after one of them is exact.
    let page = store.pending_messages(Some(ids[2]), 2).await.unwrap();
    assert_eq!(page, messages[3..5].to_vec(), "[{name}] page after an id");

    // Delivered: two of them and an id never stored.
    commit(
        store,
        &CommitBatch { delivered: vec![ids[1], message_id(), ids[4]], ..Default::default() },
    )
    .await;
    let left: Vec<Envelope> =
        messages.iter().filter(|m| m.id != ids[1] && m.id != ids[4]).cloned().collect();
    assert_eq!(pending_among(store, &ids, 2).await, left, "[{name}] delivered ids removed");

    // Produced and delivered by the same batch.
    let transient = send("c_msg_pending", instance);
    commit(
        store,
        &CommitBatch {
            outbox: vec![transient.clone()],
            delivered: vec![transient.id],
            ..Default::default()
        },
    )
    .await;
    assert!(
        pending_among(store, &[transient.id], 100).await.is_empty(),
        "[{name}] produced and delivered"
    );

    commit(store, &CommitBatch { delivered: ids.clone(), ..Default::default() }).await;
    assert!(pending_among(store, &ids, 100).await.is_empty(), "[{name}] all delivered");
}

/// An inbox entry stored twice (in one batch or two) is kept once with its first time, and
/// `inbox_entries` returns the entries of exactly the messages asked (several instances each).
pub async fn inbox_keeps_a_set(store: &dyn EventStore) {
    let name = store.backend();
    let (a, b, c) = (message_id(), message_id(), message_id());
    let (i1, i2, i3) = (
        InstanceId(uuid::Uuid::now_v7()),
        InstanceId(uuid::Uuid::now_v7()),
        InstanceId(uuid::Uuid::now_v7()),
    );
    let entry =
        |message_id, instance_id, applied_at| InboxEntry { message_id, instance_id, applied_at };
    let first =
        vec![entry(a, i1, T0), entry(a, i2, T0 + 1), entry(b, i1, T0 + 2), entry(a, i1, T0 + 3)];
    commit(
        store,
        &CommitBatch { events: chain("c_msg_inbox", 1, T0), inbox: first, ..Default::default() },
    )
    .await;
    commit(
        store,
        &CommitBatch {
            inbox: vec![entry(a, i2, T0 + 50), entry(a, i3, T0 + 4), entry(c, i3, T0 + 5)],
            ..Default::default()
        },
    )
    .await;

    let of_a = sorted(vec![entry(a, i1, T0), entry(a, i2, T0 + 1), entry(a, i3, T0 + 4)]);
    assert_eq!(
        sorted(store.inbox_entries(&[a]).await.unwrap()),
        of_a,
        "[{name}] entries of one message"
    );
    let mut of_ab = of_a.clone();
    of_ab.push(entry(b, i1, T0 + 2));
    assert_eq!(
        sorted(store.inbox_entries(&[b, a, message_id(), a]).await.unwrap()),
        sorted(of_ab),
        "[{name}] entries of several messages (one unknown, one asked twice)"
    );
    assert!(store.inbox_entries(&[]).await.unwrap().is_empty(), "[{name}] nothing asked");
    assert!(
        store.inbox_entries(&[message_id()]).await.unwrap().is_empty(),
        "[{name}] unknown message"
    );
}

/// A UUID v7 message id drawn at `millis` (ms since the epoch).
fn message_id_at(millis: i64) -> MessageId {
    let millis = u64::try_from(millis).expect("a time after 1970");
    let at = uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        (millis % 1000) as u32 * 1_000_000,
    );
    MessageId(uuid::Uuid::new_v7(at))
}

/// `purge_inbox` deletes old entries of messages no longer pending, and keeps recent entries and
/// entries whose message is still in the outbox.
pub async fn purge_inbox_keeps_recent_and_pending(store: &dyn EventStore) {
    let name = store.backend();
    // Far below every other check's times, so the count is exact.
    let old = T0 - 10_000_000;
    let cutoff = T0 - 5_000_000;
    let instance = InstanceId(uuid::Uuid::now_v7());
    // Message ids are v7 of when the message was produced, which is before it is applied.
    let mut pending = send("c_msg_purge", instance);
    pending.id = message_id_at(old - 1);
    let (gone, recent) = (message_id_at(old - 1), message_id_at(cutoff - 1));
    let entry =
        |message_id, instance_id, applied_at| InboxEntry { message_id, instance_id, applied_at };
    let entries = vec![
        entry(gone, instance, old),
        entry(gone, InstanceId(uuid::Uuid::now_v7()), old + 1),
        entry(pending.id, instance, old),
        entry(recent, instance, cutoff),
        entry(recent, InstanceId(uuid::Uuid::now_v7()), T0),
    ];
    commit(
        store,
        &CommitBatch {
            outbox: vec![pending.clone()],
            inbox: entries.clone(),
            ..Default::default()
        },
    )
    .await;

    assert_eq!(store.purge_inbox(cutoff).await.unwrap(), 2, "[{name}] purged count");
    assert!(store.inbox_entries(&[gone]).await.unwrap().is_empty(), "[{name}] old entries purged");
    assert_eq!(
        store.inbox_entries(&[pending.id]).await.unwrap(),
        vec![entries[2]],
        "[{name}] pending kept"
    );
    assert_eq!(
        sorted(store.inbox_entries(&[recent]).await.unwrap()),
        sorted(entries[3..].to_vec()),
        "[{name}] recent kept"
    );
    assert_eq!(store.purge_inbox(cutoff).await.unwrap(), 0, "[{name}] nothing more to purge");

    // Once delivered, the pending message's old entry goes too.
    commit(store, &CommitBatch { delivered: vec![pending.id], ..Default::default() }).await;
    assert_eq!(store.purge_inbox(cutoff).await.unwrap(), 1, "[{name}] purged after delivery");
    assert!(store.inbox_entries(&[pending.id]).await.unwrap().is_empty());
}

/// Dead letters: stored, replaced by message id, listed by pages in id order, read one by one,
/// removed (an unknown id ignored; put and removed in one batch leaves nothing).
pub async fn dead_letters_by_id(store: &dyn EventStore) {
    let name = store.backend();
    let instance = InstanceId(uuid::Uuid::now_v7());
    let letters = vec![
        dead(send("c_msg_dead", instance), DeadLetterKind::Undeliverable, "no such instance", 1),
        dead(
            send("c_msg_dead", instance),
            DeadLetterKind::Rejected,
            "no transition on PING in Idle",
            1,
        ),
        dead(send("c_msg_dead", instance), DeadLetterKind::Failed, "store unavailable: timeout", 5),
    ];
    let ids: Vec<MessageId> = letters.iter().map(|d| d.message.id).collect();
    commit(
        store,
        &CommitBatch {
            events: chain("c_msg_dead", 1, T0),
            dead_letters: vec![letters[2].clone(), letters[0].clone(), letters[1].clone()],
            ..Default::default()
        },
    )
    .await;
    for page in [1, 2, 1000] {
        assert_eq!(dead_among(store, &ids, page).await, letters, "[{name}] pages of {page}");
    }
    assert_eq!(
        store.dead_letters(Some(ids[0]), 1).await.unwrap(),
        vec![letters[1].clone()],
        "[{name}] page after an id"
    );
    assert_eq!(store.dead_letter(ids[1]).await.unwrap(), Some(letters[1].clone()), "[{name}] one");
    assert_eq!(store.dead_letter(message_id()).await.unwrap(), None, "[{name}] unknown id");

    // Replaced by id, within one batch (the last wins) and across batches.
    let mut again = letters[1].clone();
    again.kind = DeadLetterKind::Failed;
    again.reason = "retried: still failing".to_owned();
    again.attempts = 7;
    again.dead_at = T0 + 500;
    let mut between = again.clone();
    between.reason = "overwritten in the same batch".to_owned();
    commit(
        store,
        &CommitBatch { dead_letters: vec![between, again.clone()], ..Default::default() },
    )
    .await;
    assert_eq!(store.dead_letter(ids[1]).await.unwrap(), Some(again.clone()), "[{name}] replaced");
    let want = vec![letters[0].clone(), again.clone(), letters[2].clone()];
    assert_eq!(dead_among(store, &ids, 2).await, want, "[{name}] still one per id");

    // Removed, with an unknown id; and a letter put and removed in one batch.
    let transient = dead(send("c_msg_dead", instance), DeadLetterKind::Rejected, "gone", 1);
    commit(
        store,
        &CommitBatch {
            dead_letters: vec![transient.clone()],
            dead_letters_removed: vec![ids[0], message_id(), transient.message.id],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(store.dead_letter(ids[0]).await.unwrap(), None, "[{name}] removed");
    assert_eq!(
        store.dead_letter(transient.message.id).await.unwrap(),
        None,
        "[{name}] put and removed"
    );
    assert_eq!(dead_among(store, &ids, 1000).await, want[1..].to_vec(), "[{name}] the others stay");
    commit(store, &CommitBatch { dead_letters_removed: ids, ..Default::default() }).await;
}

/// One envelope of every kind, with every optional field both set and unset.
pub fn every_envelope(component: &str) -> Vec<Envelope> {
    let target = InstanceId(uuid::Uuid::now_v7());
    let full = |body| Envelope {
        id: message_id(),
        component: component.to_owned(),
        body,
        causation_id: Some(EventId(uuid::Uuid::now_v7())),
        correlation_id: Some(EventId(uuid::Uuid::now_v7())),
        depth: 7,
        source_component: Some("Upstream été 🚀".to_owned()),
        source_instance: Some(InstanceId(uuid::Uuid::now_v7())),
        created_at: T0 + 3,
    };
    let bare = |body| Envelope {
        id: message_id(),
        component: component.to_owned(),
        body,
        causation_id: None,
        correlation_id: None,
        depth: 0,
        source_component: None,
        source_instance: None,
        created_at: -1,
    };
    let payload = object(json!({ "amount": 12.5, "big": 9_007_199_254_740_993u64, "neg": -3,
        "nested": { "list": [1, "two", null, true], "empty": {} }, "text": "\"quoted\" \\ é" }));
    let filter = |property: &str, operator, value| PropertyFilter {
        property: property.to_owned(),
        operator,
        value,
    };
    vec![
        full(MessageBody::Send {
            instance_id: target,
            event: "PAY".to_owned(),
            payload: payload.clone(),
        }),
        bare(MessageBody::Send {
            instance_id: target,
            event: "PING".to_owned(),
            payload: Map::new(),
        }),
        full(MessageBody::Deliver {
            machine: "Order".to_owned(),
            selectors: vec![
                SelectorSpec {
                    states: Some(vec!["Open".to_owned(), "Held".to_owned()]),
                    filters: vec![
                        filter("customer.id", Operator::Eq, json!("C-1")),
                        filter("amount", Operator::Ge, json!(100)),
                        filter("flags", Operator::Ne, json!([1, {"a": null}])),
                    ],
                },
                SelectorSpec { states: None, filters: Vec::new() },
                SelectorSpec {
                    states: Some(Vec::new()),
                    filters: vec![filter("x", Operator::Lt, json!(-0.5))],
                },
            ],
            event: "CANCEL".to_owned(),
            payload: payload.clone(),
        }),
        bare(MessageBody::Deliver {
            machine: "Order".to_owned(),
            selectors: Vec::new(),
            event: "TICK".to_owned(),
            payload: Map::new(),
        }),
        full(MessageBody::Create {
            machine: "Child".to_owned(),
            instance_id: InstanceId(uuid::Uuid::now_v7()),
            context: payload,
            parent: Some(ParentRef { instance_id: target, machine: "Parent".to_owned() }),
        }),
        bare(MessageBody::Create {
            machine: "Root".to_owned(),
            instance_id: InstanceId(uuid::Uuid::now_v7()),
            context: Map::new(),
            parent: None,
        }),
    ]
}

/// Every kind of envelope comes back exactly as written, from the outbox and as a dead letter.
pub async fn envelopes_round_trip(store: &dyn EventStore) {
    let name = store.backend();
    let envelopes = every_envelope("c_msg_round_trip");
    let ids: Vec<MessageId> = envelopes.iter().map(|m| m.id).collect();
    commit(store, &CommitBatch { outbox: envelopes.clone(), ..Default::default() }).await;
    assert_eq!(pending_among(store, &ids, 1000).await, envelopes, "[{name}] outbox round trip");

    let letters: Vec<DeadLetter> = envelopes
        .iter()
        .enumerate()
        .map(|(n, m)| {
            dead(m.clone(), DeadLetterKind::Undeliverable, &format!("reason {n}: « é »"), n as u32)
        })
        .collect();
    commit(
        store,
        &CommitBatch {
            delivered: ids.clone(),
            dead_letters: letters.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(pending_among(store, &ids, 1000).await.is_empty(), "[{name}] delivered");
    assert_eq!(dead_among(store, &ids, 1000).await, letters, "[{name}] dead-letter round trip");
    for letter in &letters {
        assert_eq!(store.dead_letter(letter.message.id).await.unwrap().as_ref(), Some(letter));
    }
    commit(store, &CommitBatch { dead_letters_removed: ids, ..Default::default() }).await;
}

/// What `leave_for_reopen` stored, to be found again after the store is reopened.
pub struct Left {
    pub pending: Vec<Envelope>,
    pub inbox: Vec<InboxEntry>,
    pub dead: Vec<DeadLetter>,
}

/// Stores pending messages, inbox entries and dead letters and leaves them there.
pub async fn leave_for_reopen(store: &dyn EventStore) -> Left {
    let pending = every_envelope("c_msg_reopen");
    let instance = InstanceId(uuid::Uuid::now_v7());
    let inbox = sorted(
        pending
            .iter()
            .map(|m| InboxEntry { message_id: m.id, instance_id: instance, applied_at: T0 })
            .collect(),
    );
    let dead: Vec<DeadLetter> = every_envelope("c_msg_reopen")
        .into_iter()
        .map(|m| dead(m, DeadLetterKind::Rejected, "kept across a restart", 2))
        .collect();
    commit(
        store,
        &CommitBatch {
            events: chain("c_msg_reopen", 1, T0),
            outbox: pending.clone(),
            inbox: inbox.clone(),
            dead_letters: dead.clone(),
            ..Default::default()
        },
    )
    .await;
    Left { pending, inbox, dead }
}

/// The reopened store lists what `leave_for_reopen` stored.
pub async fn found_after_reopen(store: &dyn EventStore, left: &Left) {
    let name = store.backend();
    let ids: Vec<MessageId> = left.pending.iter().map(|m| m.id).collect();
    assert_eq!(pending_among(store, &ids, 2).await, left.pending, "[{name}] pending after reopen");
    assert_eq!(
        sorted(store.inbox_entries(&ids).await.unwrap()),
        left.inbox,
        "[{name}] inbox after reopen"
    );
    let dead_ids: Vec<MessageId> = left.dead.iter().map(|d| d.message.id).collect();
    assert_eq!(
        dead_among(store, &dead_ids, 2).await,
        left.dead,
        "[{name}] dead letters after reopen"
    );
}
