//! The content hashes a writer committed lately, so that a record sent
//! again is found in memory instead of in the term dictionary of every
//! segment of the last ten minutes.
//!
//! Without it, [`crate::RecordWriter::add_once`] looked each hash up in
//! every committed segment whose time span meets the record's window: for
//! live traffic that is every segment, so the cost of a record grew with
//! the index (`tantivy_fst::Fst::get` was 8.6 % of the collector's CPU on
//! OTLP, BENCHMARKS.md). Now a segment all of whose documents were stamped
//! since [`RecentHashes::since_us`] is answered from here; only older and
//! merged segments are still looked up.
//!
//! Bounded: the hashes are kept in generations, and past
//! [`MAX_RECENT_HASHES`] the oldest generation is dropped and
//! [`RecentHashes::since_us`] moves up to the next one's first stamp, so
//! that the segments holding the dropped hashes are looked up again.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Most hashes remembered, 17 to 37 bytes each in memory (a hash map of
/// two `u64`s, from full to just grown).
pub(crate) const MAX_RECENT_HASHES: usize = 1 << 20;

/// Generations the remembered hashes are kept in: dropping one forgets an
/// eighth of them at a time.
const GENERATIONS: usize = 8;

#[derive(Debug)]
pub(crate) struct RecentHashes {
    /// Oldest first: the first ingest stamp a document of the generation
    /// can have, and its hashes with the time of the record each came with.
    generations: VecDeque<(i64, FxHashMap<u64, i64>)>,
    len: usize,
    max: usize,
}

impl RecentHashes {
    /// Remembers the hashes of documents stamped from `first_us` on, up to
    /// `max` of them.
    pub(crate) fn new(first_us: i64, max: usize) -> Self {
        Self {
            generations: VecDeque::from([(first_us, FxHashMap::default())]),
            len: 0,
            max: max.max(GENERATIONS),
        }
    }

    /// Every hashed document this writer committed stamped at or after
    /// this is remembered: a segment whose oldest stamp is not older needs
    /// no look-up.
    pub(crate) fn since_us(&self) -> i64 {
        self.generations
            .front()
            .map_or(i64::MAX, |(first, _)| *first)
    }

    /// Whether a record of `hash` was committed with a time from `from_us`
    /// to `to_us`.
    pub(crate) fn holds(&self, hash: u64, from_us: i64, to_us: i64) -> bool {
        self.generations.iter().any(|(_, hashes)| {
            hashes
                .get(&hash)
                .is_some_and(|time| (from_us..=to_us).contains(time))
        })
    }

    /// Remembers the hashes of a commit; `next_us` is below every stamp a
    /// document added after it can have.
    pub(crate) fn committed(&mut self, hashes: impl IntoIterator<Item = (u64, i64)>, next_us: i64) {
        let Some((_, newest)) = self.generations.back_mut() else {
            return;
        };
        let before = newest.len();
        for (hash, time) in hashes {
            let kept = newest.entry(hash).or_insert(time);
            *kept = (*kept).max(time);
        }
        self.len += newest.len() - before;
        if newest.len() >= self.max / GENERATIONS {
            self.generations.push_back((next_us, FxHashMap::default()));
        }
        while self.len > self.max && self.generations.len() > 1 {
            if let Some((_, oldest)) = self.generations.pop_front() {
                self.len -= oldest.len();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_held_within_their_window_and_the_oldest_are_dropped_past_the_bound() {
        let mut recent = RecentHashes::new(100, 16);
        assert_eq!(recent.since_us(), 100);
        recent.committed([(1, 5_000), (2, 6_000)], 200);
        assert!(recent.holds(1, 4_000, 5_000));
        assert!(!recent.holds(1, 5_001, 9_000), "outside the window");
        assert!(!recent.holds(3, 0, i64::MAX));
        // Two per generation (16 / 8): the first commit closed one.
        assert_eq!(recent.generations.len(), 2);
        for commit in 0..8u64 {
            let first = 10 + commit * 2;
            recent.committed(
                [(first, 1), (first + 1, 1)],
                300 + i64::try_from(commit).unwrap(),
            );
        }
        assert!(recent.len() <= 16, "{}", recent.len());
        assert!(
            !recent.holds(1, 0, i64::MAX),
            "the oldest generation is gone"
        );
        assert!(recent.holds(25, 0, 1), "the newest stays");
        assert_eq!(recent.since_us(), 200, "the next generation's first stamp");
    }

    #[test]
    fn a_hash_sent_again_later_keeps_its_latest_time() {
        let mut recent = RecentHashes::new(0, 64);
        recent.committed([(7, 1_000)], 1);
        recent.committed([(7, 3_000)], 2);
        assert!(recent.holds(7, 2_000, 3_000));
        assert_eq!(recent.len(), 1);
    }
}
