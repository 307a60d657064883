//! The writer's memory of instance keys (`fsm_instances.ikey`), so that the summary of an
//! instance it has stored before is written by a plain `UPDATE ... WHERE ikey = ?`: no upsert,
//! hence no statement journal (SQLite copies every page an upsert touches into it first) and no
//! `RETURNING` result to materialize. The update also names the instance id, so a key that no
//! longer means that instance (purged by retention, or by another process sharing the file)
//! updates nothing and the writer falls back to the upsert.
//!
//! Bounded: two generations of at most `GENERATION_KEYS` keys each. A lookup that finds a key in
//! the older generation moves it to the current one; when the current one is full, the older
//! is dropped and the current becomes the older. Instances in use stay known, idle ones fade.

use std::collections::HashMap;
use xcomponent_core::instance::InstanceId;

/// Most keys in one generation (two are kept: about 1.5 MiB at most in all).
const GENERATION_KEYS: usize = 16_384;

/// Instance keys the writer has seen committed.
#[derive(Debug, Default)]
pub(super) struct KnownKeys {
    current: HashMap<InstanceId, i64>,
    older: HashMap<InstanceId, i64>,
}

impl KnownKeys {
    /// The key of `id`, if known.
    pub fn get(&mut self, id: &InstanceId) -> Option<i64> {
        if let Some(key) = self.current.get(id) {
            return Some(*key);
        }
        let key = self.older.remove(id)?;
        self.insert(*id, key);
        Some(key)
    }

    /// Remembers the key of `id` (only keys of committed rows: a key drawn in a transaction that
    /// was rolled back may be given to another instance).
    pub fn insert(&mut self, id: InstanceId, key: i64) {
        if self.current.len() >= GENERATION_KEYS && !self.current.contains_key(&id) {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(id, key);
    }

    /// Forgets every key (after rows were deleted).
    pub fn clear(&mut self) {
        self.current.clear();
        self.older.clear();
    }

    /// How many keys are known.
    #[cfg(test)]
    fn len(&self) -> usize {
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

    #[test]
    fn remembers_and_forgets() {
        let mut keys = KnownKeys::default();
        assert_eq!(keys.get(&id(1)), None);
        keys.insert(id(1), 10);
        keys.insert(id(2), 20);
        assert_eq!(keys.get(&id(1)), Some(10));
        assert_eq!(keys.get(&id(2)), Some(20));
        keys.insert(id(1), 11);
        assert_eq!(keys.get(&id(1)), Some(11));
        keys.clear();
        assert_eq!(keys.get(&id(1)), None);
        assert_eq!(keys.len(), 0);
    }

    #[test]
    fn bounded_to_two_generations_keeping_what_is_used() {
        let mut keys = KnownKeys::default();
        let total = GENERATION_KEYS as u128 * 3;
        for n in 0..total {
            keys.insert(id(n), n as i64);
            // Instance 0 is used all along: it is never forgotten.
            assert_eq!(keys.get(&id(0)), Some(0));
        }
        assert!(keys.len() <= 2 * GENERATION_KEYS, "{} keys kept", keys.len());
        // The most recent generation is known, the first ones (but instance 0) are not.
        assert_eq!(keys.get(&id(total - 1)), Some(total as i64 - 1));
        assert_eq!(keys.get(&id(1)), None);
    }
}
