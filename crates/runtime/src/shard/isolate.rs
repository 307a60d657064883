//! One caller's content must not fail the others' work. When a batch's commit is refused for
//! its content (`store::Error::Rejected`: a value the backend cannot keep), the batch is split
//! into independent parts and only the parts holding the refused content fail.
//!
//! The units of a batch are its messages and fired timers. Units that touch a common instance
//! form one part (a later transition of an instance builds on the earlier one, so they are
//! stored together or not at all). The parts are committed by bisection: half of them in one
//! commit, the other half in another; a refused half is halved again until each refused part
//! stands alone, so k culprits among n parts cost about 2·k·log2(n) commits. What was stored is
//! released as after any commit; the refused parts are rolled back like a failed batch (their
//! instances are put back as they were before the batch, which is exact because no unit on them
//! was stored) and their callers get the refusal. There is no pause: the store is fine. A
//! failure of the store itself met on the way fails what is left, and the shard pauses as after
//! any failed commit.

use super::ShardWork;
use super::batch::Batch;
use crate::shared::Shared;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::store::{CommitBatch, Error as StoreError, EventStore};

/// Where one unit of work ends in each list of its batch (the next unit starts there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    events: usize,
    snapshots: usize,
    outbox: usize,
    inbox: usize,
    delivered: usize,
    dead_letters: usize,
    replies: usize,
    stream: usize,
    retry: usize,
    fan_outs: usize,
    singletons: usize,
    touched: usize,
}

impl Segment {
    fn of(batch: &Batch) -> Segment {
        Segment {
            events: batch.commit.events.len(),
            snapshots: batch.commit.snapshots.len(),
            outbox: batch.commit.outbox.len(),
            inbox: batch.commit.inbox.len(),
            delivered: batch.commit.delivered.len(),
            dead_letters: batch.commit.dead_letters.len(),
            replies: batch.replies.len(),
            stream: batch.events.len(),
            retry: batch.retry.len(),
            fan_outs: batch.fan_outs.len(),
            singletons: batch.singleton_changes.len(),
            touched: batch.touched.len(),
        }
    }
}

impl Batch {
    /// Ends the current unit of work (a message or a fired timer).
    pub(crate) fn end_unit(&mut self) {
        let end = Segment::of(self);
        if self.segments.last().copied().unwrap_or_default() != end {
            self.segments.push(end);
        }
    }
}

/// The three ways a unit ends.
const STORED: usize = 0;
const REFUSED: usize = 1;
const FAILED: usize = 2;

impl ShardWork {
    /// Commits the parts of a batch whose commit was refused for its content; returns whether
    /// the store itself failed on the way (then the caller pauses).
    pub(super) async fn isolate(
        &mut self,
        shared: &Shared,
        store: &Arc<dyn EventStore>,
        mut batch: Batch,
        refused: StoreError,
    ) -> bool {
        // The unit ends, with whatever follows the last one as a unit of its own (the deferred
        // bookkeeping appended for the commit is not a unit: it is committed apart below).
        let mut segments = std::mem::take(&mut batch.segments);
        let mut tail = Segment::of(&batch);
        tail.delivered -= batch.deferred.delivered.len();
        tail.dead_letters -= batch.deferred.dead_letters.len();
        if segments.last().copied().unwrap_or_default() != tail {
            segments.push(tail);
        }
        let touched = std::mem::take(&mut batch.touched);
        let parts = Parts::of(&segments, &touched);
        let mut outcome: Vec<Option<Result<(), StoreError>>> = vec![None; parts.units.len()];
        let all: Vec<usize> = (0..parts.units.len()).collect();
        let mut pending: Vec<Vec<usize>> = Vec::new();
        if batch.deferred.is_empty() && all.len() == 1 {
            // The batch was this one part: it is the culprit.
            outcome[0] = Some(Err(refused.clone()));
        } else if batch.deferred.is_empty() {
            let (first, second) = all.split_at(all.len() / 2);
            pending.push(second.to_vec());
            pending.push(first.to_vec());
        } else {
            pending.push(all);
        }
        let mut store_failure: Option<StoreError> = None;
        let mut commits = 0usize;
        while let Some(set) = pending.pop() {
            if let Some(error) = &store_failure {
                for &part in &set {
                    outcome[part] = Some(Err(error.clone()));
                }
                continue;
            }
            let mut units: Vec<usize> =
                set.iter().flat_map(|&part| parts.units[part].iter().copied()).collect();
            units.sort_unstable();
            let mut commit = sub_commit(&batch.commit, &segments, &units);
            let result = if commit.is_empty() {
                Ok(())
            } else {
                commits += 1;
                self.commit(shared, store, &mut commit).await
            };
            match result {
                Err(StoreError::Rejected(_)) if set.len() > 1 => {
                    let (first, second) = set.split_at(set.len() / 2);
                    pending.push(second.to_vec());
                    pending.push(first.to_vec());
                }
                result => {
                    if let Err(error) = &result
                        && !matches!(error, StoreError::Rejected(_))
                    {
                        store_failure = Some(error.clone());
                    }
                    for &part in &set {
                        outcome[part] = Some(result.clone());
                    }
                }
            }
        }
        self.commit_deferred(shared, store, &mut batch, &mut store_failure).await;
        let class_of_part: Vec<usize> = outcome
            .iter()
            .map(|result| match result {
                Some(Ok(())) => STORED,
                Some(Err(StoreError::Rejected(_))) => REFUSED,
                _ => FAILED,
            })
            .collect();
        let class: Vec<usize> =
            parts.part_of_unit.iter().map(|&part| class_of_part[part]).collect();
        let refusal = outcome
            .iter()
            .find_map(|result| match result {
                Some(Err(error @ StoreError::Rejected(_))) => Some(error.clone()),
                _ => None,
            })
            .unwrap_or(refused);
        let count = |wanted: usize| class.iter().filter(|&&c| c == wanted).count();
        tracing::warn!(
            shard = self.index,
            stored = count(STORED),
            refused = count(REFUSED),
            failed = count(FAILED),
            commits,
            "Refused commit split: units stored, refused (their content), failed (store)."
        );
        let [stored, refused_part, failed_part] = split_batch(batch, &segments, &class, &parts);
        self.release(shared, stored);
        if class.contains(&REFUSED) {
            self.roll_back(shared, refused_part, refusal);
        }
        match store_failure {
            Some(error) => {
                if class.contains(&FAILED) {
                    self.roll_back(shared, failed_part, error);
                }
                self.commit_failures = self.commit_failures.saturating_add(1);
                true
            }
            None => {
                self.commit_failures = 0;
                false
            }
        }
    }

    /// Commits the bookkeeping carried from earlier batches on its own; on failure it is carried
    /// to the next batch again.
    async fn commit_deferred(
        &mut self,
        shared: &Shared,
        store: &Arc<dyn EventStore>,
        batch: &mut Batch,
        store_failure: &mut Option<StoreError>,
    ) {
        if batch.deferred.is_empty() {
            return;
        }
        let mut commit = CommitBatch {
            delivered: batch.deferred.delivered.clone(),
            dead_letters: batch.deferred.dead_letters.clone(),
            ..CommitBatch::default()
        };
        let result = match store_failure {
            Some(error) => Err(error.clone()),
            None => self.commit(shared, store, &mut commit).await,
        };
        if result.is_ok() {
            shared.settle_deliveries(&commit.delivered);
        }
        if let Err(error) = result {
            tracing::error!(shard = self.index, %error, "Outbox removals and dead letters not stored; kept for the next batch.");
            if !matches!(error, StoreError::Rejected(_)) {
                *store_failure = Some(error);
            }
            self.batch.deferred.delivered.append(&mut batch.deferred.delivered);
            self.batch.deferred.dead_letters.append(&mut batch.deferred.dead_letters);
        }
    }
}

/// The independent parts of a batch: units joined when they touch a common instance.
struct Parts {
    /// The units of each part, in order.
    units: Vec<Vec<usize>>,
    /// The part of each unit.
    part_of_unit: Vec<usize>,
    /// The first unit that touched each instance.
    owner: FxHashMap<InstanceId, usize>,
}

impl Parts {
    fn of(segments: &[Segment], touched: &[InstanceId]) -> Parts {
        let mut parent: Vec<usize> = (0..segments.len()).collect();
        fn root(parent: &mut [usize], mut unit: usize) -> usize {
            while parent[unit] != unit {
                parent[unit] = parent[parent[unit]];
                unit = parent[unit];
            }
            unit
        }
        let mut owner: FxHashMap<InstanceId, usize> = FxHashMap::default();
        let mut start = 0;
        for (unit, segment) in segments.iter().enumerate() {
            for id in &touched[start..segment.touched] {
                match owner.get(id) {
                    Some(&first) => {
                        let (a, b) = (root(&mut parent, first), root(&mut parent, unit));
                        parent[b.max(a)] = a.min(b);
                    }
                    None => {
                        owner.insert(*id, unit);
                    }
                }
            }
            start = segment.touched;
        }
        let mut index_of_root: FxHashMap<usize, usize> = FxHashMap::default();
        let mut units: Vec<Vec<usize>> = Vec::new();
        let mut part_of_unit = Vec::with_capacity(segments.len());
        for unit in 0..segments.len() {
            let top = root(&mut parent, unit);
            let part = *index_of_root.entry(top).or_insert_with(|| {
                units.push(Vec::new());
                units.len() - 1
            });
            units[part].push(unit);
            part_of_unit.push(part);
        }
        Parts { units, part_of_unit, owner }
    }
}

/// What `units` (ascending) wrote into `commit`.
fn sub_commit(commit: &CommitBatch, segments: &[Segment], units: &[usize]) -> CommitBatch {
    let mut part = CommitBatch::default();
    for &unit in units {
        let start = if unit == 0 { Segment::default() } else { segments[unit - 1] };
        let end = segments[unit];
        part.events.extend_from_slice(&commit.events[start.events..end.events]);
        part.snapshots.extend_from_slice(&commit.snapshots[start.snapshots..end.snapshots]);
        part.outbox.extend_from_slice(&commit.outbox[start.outbox..end.outbox]);
        part.inbox.extend_from_slice(&commit.inbox[start.inbox..end.inbox]);
        part.delivered.extend_from_slice(&commit.delivered[start.delivered..end.delivered]);
        part.dead_letters
            .extend_from_slice(&commit.dead_letters[start.dead_letters..end.dead_letters]);
    }
    part
}

/// Deals `items` out by unit: the items of unit `i` (up to `end(segments[i])`) go to the list
/// of `class[i]`. Items after the last unit (the deferred copies) are dropped.
fn deal<T>(
    items: Vec<T>,
    segments: &[Segment],
    end: fn(&Segment) -> usize,
    class: &[usize],
) -> [Vec<T>; 3] {
    let mut lists = [Vec::new(), Vec::new(), Vec::new()];
    let mut unit = 0;
    for (index, item) in items.into_iter().enumerate() {
        while unit < segments.len() && index >= end(&segments[unit]) {
            unit += 1;
        }
        if unit == segments.len() {
            break;
        }
        lists[class[unit]].push(item);
    }
    lists
}

/// The batch split into its stored, refused and failed units.
fn split_batch(
    mut batch: Batch,
    segments: &[Segment],
    class: &[usize],
    parts: &Parts,
) -> [Batch; 3] {
    let mut split: [Batch; 3] = Default::default();
    macro_rules! deal_out {
        ($($field:ident).+, $end:ident) => {{
            let lists = deal(std::mem::take(&mut batch.$($field).+), segments, |s| s.$end, class);
            for (target, list) in split.iter_mut().zip(lists) {
                target.$($field).+ = list;
            }
        }};
    }
    deal_out!(commit.events, events);
    deal_out!(commit.snapshots, snapshots);
    deal_out!(commit.outbox, outbox);
    deal_out!(commit.inbox, inbox);
    deal_out!(commit.delivered, delivered);
    deal_out!(commit.dead_letters, dead_letters);
    deal_out!(replies, replies);
    deal_out!(events, stream);
    deal_out!(retry, retry);
    deal_out!(fan_outs, fan_outs);
    deal_out!(singleton_changes, singletons);
    for (id, before) in batch.undo.drain() {
        // Every instance in `undo` was touched by some unit; one that somehow was not is left
        // as it is (as if stored) rather than put back over a stored transition.
        let target = parts.owner.get(&id).map_or(STORED, |&unit| class[unit]);
        split[target].undo.insert(id, before);
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> InstanceId {
        InstanceId(uuid::Uuid::from_u128(n))
    }

    fn ends(touched_ends: &[usize]) -> Vec<Segment> {
        touched_ends.iter().map(|&touched| Segment { touched, ..Segment::default() }).collect()
    }

    #[test]
    fn units_touching_a_common_instance_form_one_part() {
        // Units: 0 → a, 1 → b, 2 → a and c, 3 → d, 4 → c.
        let touched = [id(1), id(2), id(1), id(3), id(4), id(3)];
        let parts = Parts::of(&ends(&[1, 2, 4, 5, 6]), &touched);
        assert_eq!(parts.units, vec![vec![0, 2, 4], vec![1], vec![3]]);
        assert_eq!(parts.part_of_unit, vec![0, 1, 0, 2, 0]);
    }

    #[test]
    fn items_are_dealt_to_the_class_of_their_unit() {
        let segments: Vec<Segment> =
            [2, 3, 5].iter().map(|&events| Segment { events, ..Segment::default() }).collect();
        let [stored, refused, failed] = deal(
            vec!['a', 'b', 'c', 'd', 'e', 'x'],
            &segments,
            |s| s.events,
            &[STORED, REFUSED, STORED],
        );
        assert_eq!((stored, refused, failed), (vec!['a', 'b', 'd', 'e'], vec!['c'], vec![]));
    }
}
