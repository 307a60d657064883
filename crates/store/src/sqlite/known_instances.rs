//! The writer's memory of the instances it has committed: each one's row key
//! (`fsm_instances.ikey`) and the head of its event chain (`chain::Head`). With the key, a
//! summary is written by a plain `UPDATE ... WHERE ikey = ?`: no upsert, hence no statement
//! journal (SQLite copies every page an upsert touches into it first) and no `RETURNING`
//! result to materialize. With the head, appending an event reads nothing.
//!
//! A head is exact only while no other connection writes the file (another process sharing it,
//! a tool). `begin` runs at the start of every write transaction, once the writer holds the
//! file's write lock: when `PRAGMA data_version` has changed since the last transaction (it
//! changes with every commit of another connection, never with this one's), every head
//! remembered until then is stale (an epoch moves on) and is read again, with a check that the
//! key is still the instance's. The keys stay: the summary's update names the instance id too,
//! so a key that no longer means that instance updates nothing.
//!
//! Bounded: two generations of at most `GENERATION_INSTANCES` entries each. A lookup that finds
//! an entry in the older generation moves it to the current one; when the current one is full,
//! the older is dropped and the current becomes the older. Instances in use stay known, idle
//! ones fade.

use super::chain::Head;
use rusqlite::Connection;
use std::collections::HashMap;
use xcomponent_core::instance::InstanceId;

/// Most entries in one generation (two are kept: about 3 MiB at most in all).
const GENERATION_INSTANCES: usize = 16_384;

/// What the writer knows of one instance (committed, or written by the open transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Known {
    /// `fsm_instances.ikey`.
    pub key: i64,
    /// The head of its event chain (`None`: another connection has committed since it was
    /// remembered).
    pub head: Option<Head>,
}

/// One remembered instance.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: i64,
    head: Head,
    /// The epoch in which the head was remembered.
    epoch: u64,
}

/// Instances the writer has seen committed, and those the open transaction wrote.
#[derive(Debug, Default)]
pub(super) struct KnownInstances {
    current: HashMap<InstanceId, Entry>,
    older: HashMap<InstanceId, Entry>,
    /// Key and head of each instance the open transaction wrote, known to its later batches at
    /// once and to later transactions once it is committed (kept between transactions, emptied).
    pending: HashMap<InstanceId, (i64, Head)>,
    /// Moves on whenever another connection has committed: older heads are stale.
    epoch: u64,
    /// `PRAGMA data_version` as the last transaction saw it.
    data_version: Option<i64>,
}

impl KnownInstances {
    /// What is known of `id`: as the open transaction left it, else as committed.
    pub fn get(&mut self, id: &InstanceId) -> Option<Known> {
        if let Some(&(key, head)) = self.pending.get(id) {
            return Some(Known { key, head: Some(head) });
        }
        let entry = match self.current.get(id) {
            Some(entry) => *entry,
            None => {
                let entry = self.older.remove(id)?;
                self.keep(*id, entry);
                entry
            }
        };
        let head = (entry.epoch == self.epoch).then_some(entry.head);
        Some(Known { key: entry.key, head })
    }

    /// Starts a write transaction's memory: forgets what an earlier attempt wrote, and makes
    /// every remembered head stale when another connection has committed since the last
    /// transaction (`PRAGMA data_version`). Called inside the transaction (no other connection
    /// can commit until it ends).
    pub fn begin(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        self.pending.clear();
        let version: i64 = tx.query_row("PRAGMA data_version", [], |row| row.get(0))?;
        if self.data_version.is_some_and(|seen| seen != version) {
            tracing::debug!(
                backend = super::BACKEND,
                "another connection committed: the writer reads chain heads again"
            );
            self.epoch += 1;
        }
        self.data_version = Some(version);
        Ok(())
    }

    /// The open transaction wrote `id` with this key and chain head.
    pub fn wrote(&mut self, id: InstanceId, key: i64, head: Head) {
        self.pending.insert(id, (key, head));
    }

    /// The open transaction is committed: what it wrote is remembered (only then: a key drawn
    /// in a transaction that was rolled back may be given to another instance).
    pub fn committed(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        for (id, (key, head)) in pending.drain() {
            self.insert(id, key, head);
        }
        self.pending = pending;
    }

    fn insert(&mut self, id: InstanceId, key: i64, head: Head) {
        self.keep(id, Entry { key, head, epoch: self.epoch });
    }

    fn keep(&mut self, id: InstanceId, entry: Entry) {
        if self.current.len() >= GENERATION_INSTANCES && !self.current.contains_key(&id) {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(id, entry);
    }

    /// Forgets every instance (after rows were deleted, or a transaction failed in a way that
    /// leaves unsure what was stored).
    pub fn clear(&mut self) {
        self.current.clear();
        self.older.clear();
        self.pending.clear();
    }

    /// How many instances are known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.current.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u128) -> InstanceId {
        InstanceId(Uuid::from_u128(n))
    }

    fn head(key: i64) -> Head {
        Head { rowid: Some(key * 10), seq: key }
    }

    fn known(key: i64) -> Known {
        Known { key, head: Some(head(key)) }
    }

    #[test]
    fn remembers_and_forgets() {
        let mut instances = KnownInstances::default();
        assert_eq!(instances.get(&id(1)), None);
        instances.insert(id(1), 10, head(10));
        instances.insert(id(2), 20, head(20));
        assert_eq!(instances.get(&id(1)), Some(known(10)));
        assert_eq!(instances.get(&id(2)), Some(known(20)));
        instances.insert(id(1), 11, head(11));
        assert_eq!(instances.get(&id(1)), Some(known(11)));
        instances.clear();
        assert_eq!(instances.get(&id(1)), None);
        assert_eq!(instances.len(), 0);
    }

    #[test]
    fn bounded_to_two_generations_keeping_what_is_used() {
        let mut instances = KnownInstances::default();
        let total = GENERATION_INSTANCES as u128 * 3;
        for n in 0..total {
            instances.insert(id(n), n as i64, head(n as i64));
            // Instance 0 is used all along: it is never forgotten.
            assert_eq!(instances.get(&id(0)), Some(known(0)));
        }
        assert!(instances.len() <= 2 * GENERATION_INSTANCES, "{} kept", instances.len());
        // The most recent generation is known, the first ones (but instance 0) are not.
        assert_eq!(instances.get(&id(total - 1)), Some(known(total as i64 - 1)));
        assert_eq!(instances.get(&id(1)), None);
    }

    #[test]
    fn a_commit_by_another_connection_makes_the_heads_stale() {
        let dir = std::env::temp_dir().join(format!("xc-known-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("k.db");
        let ours = Connection::open(&path).expect("open");
        let theirs = Connection::open(&path).expect("open");
        ours.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").expect("table");
        let mut instances = KnownInstances::default();
        instances.begin(&ours).expect("first");
        instances.insert(id(1), 1, head(1));
        // Our own commits keep what is known.
        ours.execute("INSERT INTO t VALUES (1)", []).expect("ours");
        instances.begin(&ours).expect("after ours");
        assert_eq!(instances.get(&id(1)), Some(known(1)));
        theirs.execute("INSERT INTO t VALUES (2)", []).expect("theirs");
        instances.begin(&ours).expect("after theirs");
        assert_eq!(instances.get(&id(1)), Some(Known { key: 1, head: None }), "heads are stale");
        instances.insert(id(1), 1, head(2));
        assert_eq!(
            instances.get(&id(1)),
            Some(Known { key: 1, head: Some(head(2)) }),
            "read again"
        );
        drop((ours, theirs));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
