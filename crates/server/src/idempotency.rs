//! The webhook routes' memory of `Idempotency-Key`s: a sender that retries a delivery with the
//! same key gets the first answer again (with `Idempotent-Replayed: true`) and the event is not
//! sent twice.
//!
//! What is remembered: the successful answers (2xx: the event was applied, ignored, or handed to
//! another process), for [`IDEMPOTENCY_WINDOW`], at most [`IDEMPOTENCY_MAX_KEYS`] keys (past it
//! the oldest answer is forgotten first). An error answer is not remembered: nothing was applied,
//! so a retry is tried again. A key whose first request is still being served answers 409
//! `idempotency_key_in_use`; a key sent again with another route or body answers 422
//! `idempotency_key_reused`. The memory is this process's: servers behind one load balancer do
//! not share it.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an answer is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Most keys remembered at once (answers and requests being served).
pub const IDEMPOTENCY_MAX_KEYS: usize = 10_000;

/// Longest accepted `Idempotency-Key` (bytes).
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

/// The request header.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The response header set on a replayed answer.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// A remembered answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug)]
enum Entry {
    InFlight { fingerprint: [u8; 32], seq: u64 },
    Done { fingerprint: [u8; 32], seq: u64, answer: Answer, at: Instant },
}

impl Entry {
    fn seq(&self) -> u64 {
        match self {
            Entry::InFlight { seq, .. } | Entry::Done { seq, .. } => *seq,
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    entries: HashMap<String, Entry>,
    /// Keys in the order they were reserved, with the `seq` of that reservation (a key removed
    /// or reserved again leaves a stale item here, skipped when popped).
    order: VecDeque<(String, u64)>,
    next_seq: u64,
}

/// The memory (cheap to clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct Idempotency {
    inner: Arc<Mutex<Memory>>,
}

/// What to do with a request carrying a key.
pub(crate) enum Begin {
    /// First time (or forgotten): serve it, then `finish` the reservation.
    Serve(Reservation),
    /// Answered before: send this again.
    Replay(Answer),
}

/// A key being served; dropped without `finish` (the request failed or was cancelled), the key
/// is forgotten.
pub(crate) struct Reservation {
    memory: Idempotency,
    key: String,
    seq: u64,
    finished: bool,
}

/// The fingerprint of what a key is bound to: the route and the body.
pub(crate) fn fingerprint(path: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(body);
    hash.finalize().into()
}

/// Checks a key's form: 1 to [`IDEMPOTENCY_KEY_MAX_LEN`] visible ASCII characters.
pub(crate) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty()
        || key.len() > IDEMPOTENCY_KEY_MAX_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError {
            field: Some("Idempotency-Key".to_owned()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} visible ASCII characters"
                ),
            )
        });
    }
    Ok(())
}

impl Idempotency {
    fn lock(&self) -> MutexGuard<'_, Memory> {
        // The memory stays consistent between statements: a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks `key` up for a request with `fingerprint`, at `now`.
    pub(crate) fn begin(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        now: Instant,
    ) -> Result<Begin, ApiError> {
        let mut memory = self.lock();
        match memory.entries.get(key) {
            Some(Entry::Done { fingerprint: first, answer, at, .. })
                if now.saturating_duration_since(*at) < IDEMPOTENCY_WINDOW =>
            {
                if *first != fingerprint {
                    return Err(reused());
                }
                return Ok(Begin::Replay(answer.clone()));
            }
            Some(Entry::InFlight { fingerprint: first, .. }) => {
                if *first != fingerprint {
                    return Err(reused());
                }
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is being served; retry once it is answered",
                ));
            }
            _ => {}
        }
        memory.make_room(now);
        let seq = memory.next_seq;
        memory.next_seq += 1;
        memory.entries.insert(key.to_owned(), Entry::InFlight { fingerprint, seq });
        memory.order.push_back((key.to_owned(), seq));
        Ok(Begin::Serve(Reservation {
            memory: self.clone(),
            key: key.to_owned(),
            seq,
            finished: false,
        }))
    }

    /// Keys remembered now (answers and requests being served).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

fn reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used for another request (route or body); use a new key",
    )
}

impl Memory {
    /// Forgets expired answers, then the oldest ones until a new key fits.
    fn make_room(&mut self, now: Instant) {
        while let Some((key, seq)) = self.order.front().cloned() {
            let current = self.entries.get(&key).filter(|entry| entry.seq() == seq);
            let evict = match current {
                None => {
                    self.order.pop_front();
                    continue;
                }
                Some(Entry::Done { at, .. }) => {
                    now.saturating_duration_since(*at) >= IDEMPOTENCY_WINDOW
                        || self.entries.len() >= IDEMPOTENCY_MAX_KEYS
                }
                // The oldest request is still being served: forget it only when full.
                Some(Entry::InFlight { .. }) => self.entries.len() >= IDEMPOTENCY_MAX_KEYS,
            };
            if !evict {
                break;
            }
            self.order.pop_front();
            self.entries.remove(&key);
        }
        // Stale items (keys forgotten after an error answer) do not pile up.
        if self.order.len() > 2 * IDEMPOTENCY_MAX_KEYS {
            let entries = &self.entries;
            self.order.retain(|(key, seq)| entries.get(key).is_some_and(|e| e.seq() == *seq));
        }
    }
}

impl Reservation {
    /// Records the answer: remembered when it is a success, else the key is forgotten.
    pub(crate) fn finish(mut self, answer: &Answer, now: Instant) {
        self.finished = true;
        let mut memory = self.memory.lock();
        let Some(entry) = memory.entries.get_mut(&self.key) else { return };
        let Entry::InFlight { fingerprint, seq } = *entry else { return };
        if seq != self.seq {
            return;
        }
        if answer.status.is_success() {
            *entry = Entry::Done { fingerprint, seq, answer: answer.clone(), at: now };
        } else {
            memory.entries.remove(&self.key);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut memory = self.memory.lock();
        if memory.entries.get(&self.key).is_some_and(|entry| entry.seq() == self.seq) {
            memory.entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: StatusCode, body: &'static str) -> Answer {
        Answer { status, body: Bytes::from_static(body.as_bytes()) }
    }

    fn serve(memory: &Idempotency, key: &str, print: [u8; 32], now: Instant) -> Reservation {
        match memory.begin(key, print, now) {
            Ok(Begin::Serve(reservation)) => reservation,
            Ok(Begin::Replay(_)) => panic!("{key} replayed"),
            Err(error) => panic!("{key}: {error}"),
        }
    }

    #[test]
    fn a_success_is_replayed_an_error_is_not() {
        let memory = Idempotency::default();
        let now = Instant::now();
        let print = fingerprint("/webhooks/A/x/E", b"{}");
        let first = serve(&memory, "k1", print, now);
        let busy = memory.begin("k1", print, now).err().map(|error| error.code);
        assert_eq!(busy, Some("idempotency_key_in_use"));
        first.finish(&answer(StatusCode::OK, "first"), now);
        match memory.begin("k1", print, now) {
            Ok(Begin::Replay(replayed)) => assert_eq!(replayed.body, "first"),
            _ => panic!("the answer is replayed"),
        }
        let other = fingerprint("/webhooks/A/x/E", b"{\"a\":1}");
        let reused = memory.begin("k1", other, now).err().map(|error| error.code);
        assert_eq!(reused, Some("idempotency_key_reused"));
        // Past the window the key is new again.
        let later = now + IDEMPOTENCY_WINDOW;
        serve(&memory, "k1", print, later).finish(&answer(StatusCode::OK, "again"), later);

        serve(&memory, "k2", print, now).finish(&answer(StatusCode::NOT_FOUND, "gone"), now);
        serve(&memory, "k2", print, now);
        // Dropped unfinished: forgotten.
        assert!(matches!(memory.begin("k2", print, now), Ok(Begin::Serve(_))));
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let memory = Idempotency::default();
        let now = Instant::now();
        let print = fingerprint("/p", b"");
        for index in 0..IDEMPOTENCY_MAX_KEYS + 10 {
            serve(&memory, &format!("key-{index}"), print, now)
                .finish(&answer(StatusCode::OK, "ok"), now);
        }
        assert_eq!(memory.len(), IDEMPOTENCY_MAX_KEYS);
        // The oldest answers were forgotten first.
        assert!(matches!(memory.begin("key-0", print, now), Ok(Begin::Serve(_))));
        let last = format!("key-{}", IDEMPOTENCY_MAX_KEYS + 9);
        assert!(matches!(memory.begin(&last, print, now), Ok(Begin::Replay(_))));
    }

    #[test]
    fn keys_have_a_form() {
        assert!(check_key("evt_123-abc").is_ok());
        for bad in ["", "has space", "é", &"k".repeat(IDEMPOTENCY_KEY_MAX_LEN + 1)] {
            assert_eq!(check_key(bad).err().map(|e| e.code), Some("bad_idempotency_key"));
        }
    }
}
