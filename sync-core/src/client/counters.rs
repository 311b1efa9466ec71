//! Which envelope counters of one device in one space this replica has applied, so a server
//! that serves an envelope twice (a replay) is noticed.
//!
//! DESIGN.md §3: `ctr` rises by one per envelope of a device in a space; "duplicates ignored,
//! gaps reported, never fatal". The log need not carry a device's counters in order (two pushes
//! of one device may race; after a server restore a device re-uploads older envelopes after a
//! newer one), and snapshots prune envelopes a new device then never sees. So the record keeps
//! the highest counter applied and the gaps below it: a counter in a gap is late, not replayed.
//! Gaps are bounded; past the bound the oldest are forgotten (counters at or below `floor` can no
//! longer be checked and are applied, which is harmless: applying a change twice is a no-op).

use serde::{Deserialize, Serialize};

/// Gaps kept per device and space before the oldest are forgotten.
const MAX_GAPS: usize = 512;

/// The verdict on one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Above every counter seen: the usual case.
    Fresh,
    /// Fills a gap below the highest counter seen.
    Late,
    /// Too old to check (below the forgotten gaps): applied, since a replay changes nothing.
    Unchecked,
    /// Seen before: a replay.
    Replay,
}

/// Applied counters of one device in one space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenCounters {
    /// The highest counter applied.
    highest: u64,
    /// Counters at or below it are not tracked any more.
    floor: u64,
    /// Inclusive ranges of counters below `highest` not applied yet, sorted, disjoint.
    gaps: Vec<(u64, u64)>,
}

impl SeenCounters {
    /// Judges a counter and, unless it is a replay, records it.
    pub(crate) fn admit(&mut self, ctr: u64) -> Admission {
        if ctr > self.highest {
            if ctr > self.highest + 1 {
                self.gaps.push((self.highest + 1, ctr - 1));
                if self.gaps.len() > MAX_GAPS {
                    let (_, end) = self.gaps.remove(0);
                    self.floor = end;
                }
            }
            self.highest = ctr;
            return Admission::Fresh;
        }
        if ctr <= self.floor {
            return Admission::Unchecked;
        }
        let position = self.gaps.partition_point(|&(_, end)| end < ctr);
        match self.gaps.get(position).copied() {
            Some((start, end)) if start <= ctr => {
                match (start == ctr, end == ctr) {
                    (true, true) => {
                        self.gaps.remove(position);
                    }
                    (true, false) => self.gaps[position].0 = ctr + 1,
                    (false, true) => self.gaps[position].1 = ctr - 1,
                    (false, false) => {
                        self.gaps[position].1 = ctr - 1;
                        self.gaps.insert(position + 1, (ctr + 1, end));
                    }
                }
                Admission::Late
            }
            _ => Admission::Replay,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Counters below the highest never applied, as far as still tracked.
    fn missing(seen: &SeenCounters) -> u64 {
        seen.gaps.iter().map(|&(start, end)| end - start + 1).sum()
    }

    #[test]
    fn in_order_counters_are_fresh_and_a_repeat_is_a_replay() {
        let mut seen = SeenCounters::default();
        for ctr in 1..=5 {
            assert_eq!(seen.admit(ctr), Admission::Fresh);
        }
        assert_eq!(seen.admit(3), Admission::Replay);
        assert_eq!(seen.admit(5), Admission::Replay);
        assert_eq!(missing(&seen), 0);
    }

    #[test]
    fn a_late_counter_fills_its_gap_once() {
        let mut seen = SeenCounters::default();
        assert_eq!(seen.admit(1), Admission::Fresh);
        assert_eq!(seen.admit(6), Admission::Fresh);
        assert_eq!(missing(&seen), 4);
        assert_eq!(seen.admit(4), Admission::Late);
        assert_eq!(seen.admit(4), Admission::Replay);
        assert_eq!(seen.admit(2), Admission::Late);
        assert_eq!(seen.admit(5), Admission::Late);
        assert_eq!(seen.admit(3), Admission::Late);
        assert_eq!(missing(&seen), 0);
        assert_eq!(seen.gaps, Vec::new());
    }

    #[test]
    fn a_new_device_after_pruning_keeps_one_gap() {
        let mut seen = SeenCounters::default();
        assert_eq!(seen.admit(40), Admission::Fresh);
        assert_eq!(seen.gaps, vec![(1, 39)]);
        assert_eq!(seen.admit(41), Admission::Fresh);
        assert_eq!(seen.admit(40), Admission::Replay);
    }

    #[test]
    fn past_the_bound_the_oldest_gaps_are_forgotten_not_refused() {
        let mut seen = SeenCounters::default();
        for step in 0..(MAX_GAPS as u64 + 10) {
            seen.admit(step * 2 + 2);
        }
        assert_eq!(seen.gaps.len(), MAX_GAPS);
        assert!(seen.floor > 0);
        assert_eq!(seen.admit(1), Admission::Unchecked);
        assert_eq!(seen.admit(seen.highest - 1), Admission::Late);
    }

    proptest! {
        /// Against a set of every counter seen: whatever the order, a counter is refused exactly
        /// when it was admitted before (while gaps stay under the bound).
        #[test]
        fn admits_each_counter_once_in_any_order(
            counters in proptest::collection::vec(1u64..300, 0..400),
        ) {
            let mut seen = SeenCounters::default();
            let mut model = BTreeSet::new();
            for ctr in counters {
                let verdict = seen.admit(ctr);
                let first_time = model.insert(ctr);
                prop_assert_eq!(verdict == Admission::Replay, !first_time, "counter {}", ctr);
                prop_assert!(verdict != Admission::Unchecked);
            }
            let highest = model.last().copied().unwrap_or(0);
            prop_assert_eq!(missing(&seen), highest - model.len() as u64);
        }
    }
}
