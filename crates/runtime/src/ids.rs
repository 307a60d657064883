//! Drawing fresh identifiers. The core never draws an id (it reads no clock); the runtime does,
//! here, with UUID v7: time-ordered, and ordered by creation within a process.
//!
//! A deterministic simulation (one thread, simulated time) seeds the ids drawn on its thread
//! (`seed_ids_on_this_thread`): they are then still v7 and ordered by creation, their time is a
//! count from a fixed instant, and their random bits come from the seed, so that the same seed
//! gives the same ids, hence the same partitions.

use std::cell::Cell;
use xcomponent_core::instance::{EventId, InstanceId};
use xcomponent_core::message::MessageId;
use xcomponent_core::mix::splitmix64;

/// The instant (ms since the epoch) the seeded ids count from, one millisecond per id.
const SEEDED_IDS_EPOCH_MS: u64 = 1_800_000_000_000;

thread_local! {
    /// `(generator state, ids drawn)` when this thread's ids are seeded.
    static SEEDED: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// Makes the ids drawn on this thread come from `seed` (`None`: from the clock and the operating
/// system's randomness again). For simulations on a single-threaded runtime; ids drawn on other
/// threads are not affected.
#[doc(hidden)]
pub fn seed_ids_on_this_thread(seed: Option<u64>) {
    SEEDED.with(|seeded| seeded.set(seed.map(|seed| (seed, 0))));
}

fn seeded_uuid() -> Option<uuid::Uuid> {
    SEEDED.with(|seeded| {
        let (mut state, count) = seeded.get()?;
        let mixed = splitmix64(&mut state);
        seeded.set(Some((state, count + 1)));
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&mixed.to_le_bytes());
        random[8..].copy_from_slice(&(count as u16).to_le_bytes());
        Some(
            uuid::Builder::from_unix_timestamp_millis(SEEDED_IDS_EPOCH_MS + count, &random)
                .into_uuid(),
        )
    })
}

/// An identifier type the runtime can draw a fresh value of.
pub trait DrawId: Sized {
    /// A fresh, time-ordered id (UUID v7).
    fn draw() -> Self;
}

macro_rules! draw_v7 {
    ($($name:ty),*) => {$(
        impl DrawId for $name {
            fn draw() -> Self {
                Self(seeded_uuid().unwrap_or_else(uuid::Uuid::now_v7))
            }
        }
    )*};
}

draw_v7!(InstanceId, EventId, MessageId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_repeat_with_their_seed_and_stay_ordered() {
        let draw = |seed| {
            seed_ids_on_this_thread(Some(seed));
            let ids: Vec<InstanceId> = (0..100).map(|_| InstanceId::draw()).collect();
            seed_ids_on_this_thread(None);
            ids
        };
        let (first, again, other) = (draw(7), draw(7), draw(8));
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(first.windows(2).all(|pair| pair[0].0 < pair[1].0), "ordered by creation");
        assert!(first.iter().all(|id| id.0.get_version_num() == 7));
        assert_ne!(InstanceId::draw().0.get_timestamp(), first[0].0.get_timestamp());
    }
}
