//! The topics a Kafka bus knows to exist, and whether that knowledge still holds after the last
//! lost broker connection.
//!
//! A broker restarted empty has lost every topic; tansu then accepts a record produced to a
//! topic it no longer has and loses it when the topic is created again. So after a lost
//! connection nothing is taken as known until the topic keeper has found (or created) every
//! topic again: meanwhile each produce creates its topic first (`CreateTopics` leaves an
//! existing one as it is).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Known topics, and the count of lost connections against the count last checked.
#[derive(Debug, Default)]
pub(super) struct TopicBook {
    known: Mutex<HashSet<String>>,
    /// Broker connections lost so far (counted by the producer's error callback).
    losses: AtomicU64,
    /// `losses` as it was when the topic keeper last found every known topic on the broker.
    checked: AtomicU64,
}

impl TopicBook {
    /// Whether `topic` exists as far as this bus can tell without asking the broker.
    pub fn is_known(&self, topic: &str) -> bool {
        self.checked.load(Ordering::Acquire) == self.losses.load(Ordering::Acquire)
            && super::lock(&self.known).contains(topic)
    }

    pub fn insert(&self, topic: &str) {
        super::lock(&self.known).insert(topic.to_owned());
    }

    pub fn remove(&self, topic: &str) {
        super::lock(&self.known).remove(topic);
    }

    /// Every topic this bus has used.
    pub fn all(&self) -> Vec<String> {
        super::lock(&self.known).iter().cloned().collect()
    }

    /// A broker connection was lost: no topic is known until checked again.
    pub fn connection_lost(&self) {
        self.losses.fetch_add(1, Ordering::AcqRel);
    }

    /// The count of lost connections, read before a check of every topic.
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::Acquire)
    }

    /// Every topic was found on the broker by a check started when `losses` was `seen`.
    pub fn checked(&self, seen: u64) {
        self.checked.fetch_max(seen, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_unknows_every_topic_until_checked() {
        let book = TopicBook::default();
        book.insert("t");
        assert!(book.is_known("t"));
        book.connection_lost();
        assert!(!book.is_known("t"), "known right after a lost connection");
        let seen = book.losses();
        book.connection_lost(); // lost again while the keeper checks
        book.checked(seen);
        assert!(!book.is_known("t"), "an older check must not cover a newer loss");
        book.checked(book.losses());
        assert!(book.is_known("t"));
    }
}
