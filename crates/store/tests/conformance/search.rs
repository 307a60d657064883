//! Conformance checks on the audit queries: search filters, cursors, page cap, correlation.

use super::*;
use xcomponent_core::store::{InstanceQuery, MAX_PAGE_SIZE};

fn query(component: &str) -> InstanceQuery {
    InstanceQuery { component: Some(component.to_owned()), limit: 100, ..Default::default() }
}

async fn ids(store: &dyn EventStore, query: &InstanceQuery) -> Vec<InstanceId> {
    let page = store.search(query).await.unwrap();
    page.items.iter().map(|r| r.id).collect()
}

/// Each filter of `InstanceQuery`, alone and combined; results most recently updated first.
pub async fn search_filters(store: &dyn EventStore) {
    let component = "c_search";
    let mut a = chain(component, 1, T0 + 100);
    a[0].context = Some(object(json!({ "customer": "Alice-Wonder", "orderId": "ORD-7781" })));
    let mut b = chain(component, 2, T0 + 200);
    // A change (layout 2): the text is found in the data it produced.
    b[1].changes.set = object(json!({ "customer": "bob", "note": "50%_off" }));
    let mut c = chain(component, 1, T0 + 300);
    c.push(next(&c[0], "END", "End", Status::Completed, T0 + 400));
    c[1].machine = "Machine".into();
    let mut d = created(
        component,
        InstanceId(uuid::Uuid::now_v7()),
        "S1",
        T0 + 50,
        json!({ "customer": "dave" }),
    );
    d.machine = "Other".into();
    let other = chain("c_search_other", 1, T0 + 500);
    let all = [a.clone(), b.clone(), c.clone(), vec![d.clone()], other.clone()].concat();
    commit(store, &batch(all)).await;
    let (ia, ib, ic, id) = (a[0].instance_id, b[0].instance_id, c[0].instance_id, d.instance_id);
    let name = store.backend();

    assert_eq!(ids(store, &query(component)).await, vec![ic, ib, ia, id], "[{name}] newest first");
    let q = InstanceQuery { machine: Some("Other".to_owned()), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![id], "[{name}] machine");
    let q = InstanceQuery { state: Some("S2".to_owned()), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![ib], "[{name}] state");
    let q = InstanceQuery { status: Some(Status::Completed), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![ic], "[{name}] status");
    let q = InstanceQuery { status: Some(Status::Active), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![ib, ia, id], "[{name}] active");
    let q = InstanceQuery { text: Some("alice-wonder".to_owned()), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![ia], "[{name}] text in data, any case");
    let q = InstanceQuery { text: Some("ORD-778".to_owned()), ..Default::default() };
    assert_eq!(ids(store, &q).await, vec![ia], "[{name}] text without other filters");
    let q = InstanceQuery { text: Some("50%_".to_owned()), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![ib], "[{name}] text with LIKE wildcards is literal");
    let q = InstanceQuery { text: Some("0%o".to_owned()), ..query(component) };
    assert!(ids(store, &q).await.is_empty(), "[{name}] % is not a wildcard");
    let tail = ic.to_string()[24..].to_uppercase();
    let q = InstanceQuery { text: Some(tail), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![ic], "[{name}] text in id");
    let q = InstanceQuery {
        updated_from: Some(T0 + 100),
        updated_to: Some(T0 + 201),
        ..query(component)
    };
    assert_eq!(ids(store, &q).await, vec![ib, ia], "[{name}] time range, inclusive");
    let q = InstanceQuery {
        updated_from: Some(T0 + 202),
        status: Some(Status::Active),
        ..query(component)
    };
    assert!(ids(store, &q).await.is_empty(), "[{name}] combined filters");
    let q = InstanceQuery { component: Some("c_search_other".to_owned()), ..query(component) };
    assert_eq!(ids(store, &q).await, vec![other[0].instance_id], "[{name}] component");
    let q = InstanceQuery { component: Some("c_search_none".to_owned()), ..query(component) };
    let empty = store.search(&q).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none(), "[{name}] no match");

    let record = &store
        .search(&InstanceQuery { state: Some("End".to_owned()), ..query(component) })
        .await
        .unwrap()
        .items[0];
    assert_eq!(*record, expected(&c), "[{name}] search returns full records");
}

/// Cursor paging walks the whole result, ties on `updated_at` included, without repeats.
pub async fn search_cursor_paging(store: &dyn EventStore) {
    let component = "c_cursor";
    let mut events = Vec::new();
    for i in 0..7 {
        // Three pairs share a timestamp, to exercise the tie-break on the id.
        events.extend(chain(component, 1, T0 + (i / 2) as i64));
    }
    commit(store, &batch(events.clone())).await;
    let mut want: Vec<(Millis, InstanceId)> =
        events.iter().map(|e| (e.timestamp, e.instance_id)).collect();
    want.sort_by(|x, y| y.cmp(x));
    let want: Vec<InstanceId> = want.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids(store, &query(component)).await,
        want,
        "[{}] order (updated desc, id desc)",
        store.backend()
    );

    let mut got = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let q = InstanceQuery { limit: 2, cursor: cursor.clone(), ..query(component) };
        let page = store.search(&q).await.unwrap();
        assert!(page.items.len() <= 2);
        got.extend(page.items.iter().map(|r| r.id));
        pages += 1;
        assert!(pages <= 10, "[{}] paging does not end", store.backend());
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(got, want, "[{}] pages cover everything once", store.backend());
    let bad = InstanceQuery { cursor: Some("not a cursor".to_owned()), ..query(component) };
    assert!(store.search(&bad).await.is_err(), "[{}] a bad cursor is an error", store.backend());
}

/// `limit` is capped at `MAX_PAGE_SIZE` (uses the 2,500 instances of the paging check).
pub async fn search_limit_is_capped(store: &dyn EventStore) {
    let q = InstanceQuery {
        component: Some("c_paging".to_owned()),
        limit: MAX_PAGE_SIZE * 5,
        ..Default::default()
    };
    let page = store.search(&q).await.unwrap();
    assert_eq!(page.items.len(), MAX_PAGE_SIZE, "[{}] page capped", store.backend());
    assert!(page.next_cursor.is_some());
    let q =
        InstanceQuery { component: Some("c_paging".to_owned()), limit: 0, ..Default::default() };
    assert_eq!(
        store.search(&q).await.unwrap().items.len(),
        MAX_PAGE_SIZE,
        "[{}] 0 = the cap",
        store.backend()
    );
}

/// A causal chain crossing two components comes back in time order, bounded by `limit`.
pub async fn correlated_chain_across_components(store: &dyn EventStore) {
    let order = chain("c_corr_orders", 2, T0 + 1_000);
    let root = order[0].correlation_id;
    let mut payment = created(
        "c_corr_payments",
        InstanceId(uuid::Uuid::now_v7()),
        "Pending",
        T0 + 1_002,
        json!({ "orderId": "O-9" }),
    );
    payment.correlation_id = root;
    payment.causation_id = Some(order[1].id);
    payment.source_component = Some("c_corr_orders".into());
    let mut paid = next(&payment, "PAID", "Paid", Status::Completed, T0 + 1_004);
    paid.correlation_id = root;
    let mut shipped = next(&order[1], "SHIP", "Shipped", Status::Active, T0 + 1_005);
    shipped.causation_id = Some(paid.id);
    let unrelated = chain("c_corr_orders", 1, T0 + 1_003);
    // Committed out of time order, in two batches.
    commit(store, &batch(vec![paid.clone(), shipped.clone(), unrelated[0].clone()])).await;
    commit(store, &batch(vec![order[0].clone(), order[1].clone(), payment.clone()])).await;

    let want = vec![order[0].clone(), order[1].clone(), payment, paid, shipped];
    assert_eq!(
        store.correlated(root, 100).await.unwrap(),
        want,
        "[{}] chain in time order",
        store.backend()
    );
    assert_eq!(
        store.correlated(root, 2).await.unwrap(),
        want[..2].to_vec(),
        "[{}] limit",
        store.backend()
    );
    assert!(store.correlated(EventId(uuid::Uuid::now_v7()), 10).await.unwrap().is_empty());
}

/// One instance whose transitions move between two chains and back, over many commits and more
/// than one hundred sequence numbers: each chain lists exactly its own events, in order.
pub async fn correlated_chains_that_share_an_instance(store: &dyn EventStore) {
    let mut events = chain("c_corr_shared", 1, T0 + 2_000);
    let first = events[0].correlation_id;
    let second = EventId(uuid::Uuid::now_v7());
    // Seqs 2..=40 in the first chain, 41..=150 in the second, 151..=160 in the first again.
    for seq in 2..=160_u64 {
        let last = events.last().expect("a creation");
        let mut event =
            next(last, "GO", &format!("S{seq}"), Status::Active, T0 + 2_000 + seq as i64);
        event.correlation_id = if (41..=150).contains(&seq) { second } else { first };
        events.push(event);
    }
    for part in events.chunks(7) {
        commit(store, &batch(part.to_vec())).await;
    }
    let name = store.backend();
    let want = |chain: EventId| -> Vec<u64> {
        events.iter().filter(|e| e.correlation_id == chain).map(|e| e.seq).collect()
    };
    for chain in [first, second] {
        let got: Vec<u64> =
            store.correlated(chain, 1_000).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, want(chain), "[{name}] the chain's own events, no more");
    }
}

/// `text` matches the current data only: not a value an event replaced or a key it removed,
/// and a text spanning two top-level entries set by different events is found.
pub async fn search_text_sees_current_data(store: &dyn EventStore) {
    let component = "c_search_current";
    let mut events = chain(component, 3, T0 + 600);
    events[0].context = Some(object(json!({ "city": "Zanzibar-old", "gone": "Quokka-key" })));
    events[1].changes = DataChanges {
        set: object(json!({ "city": "Yverdon-new" })),
        removed: vec!["gone".to_owned()],
    };
    events[2].changes.set = object(json!({ "zz": "Walrus-late" }));
    commit(store, &batch(events.clone())).await;
    let id = events[0].instance_id;
    let name = store.backend();
    let search = |text: &str| InstanceQuery { text: Some(text.to_owned()), ..query(component) };
    assert_eq!(ids(store, &search("yverdon-NEW")).await, vec![id], "[{name}] current value");
    assert!(ids(store, &search("zanzibar-old")).await.is_empty(), "[{name}] replaced value");
    assert!(ids(store, &search("quokka-key")).await.is_empty(), "[{name}] removed key");
    // The data is `{"city":"Yverdon-new","zz":"Walrus-late"}`: two entries set by two events.
    let spanning = r#"yverdon-new","zz":"walrus"#;
    assert_eq!(ids(store, &search(spanning)).await, vec![id], "[{name}] text across entries");
}
