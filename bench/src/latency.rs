//! Latency samples and their percentiles, in microseconds. Only arithmetic:
//! the caller times, this module sorts and reads ranks.

use std::time::Duration;

/// The latencies of one kind of request.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u64>,
}

/// Count, percentiles (nearest rank) and maximum, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latencies {
    pub fn record(&mut self, elapsed: Duration) {
        self.micros
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds `other`'s samples to these.
    pub fn extend(&mut self, other: &Latencies) {
        self.micros.extend_from_slice(&other.micros);
    }

    /// The sum of the samples.
    pub fn total_micros(&self) -> u64 {
        self.micros.iter().sum()
    }

    pub fn summary(&self) -> Summary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        Summary {
            count: sorted.len(),
            p50: percentile(&sorted, 50),
            p90: percentile(&sorted, 90),
            p99: percentile(&sorted, 99),
            max: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// The nearest-rank `p`th percentile of `sorted` (0 when empty): the
/// smallest value with at least `p` percent of the values at or below it.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p.min(100) as usize).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&values, 100), 100);
        assert_eq!(percentile(&[7], 1), 7);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
        assert_eq!(percentile(&[], 50), 0);
        let mut latencies = Latencies::default();
        for micros in [30, 10, 20] {
            latencies.record(Duration::from_micros(micros));
        }
        let summary = latencies.summary();
        assert_eq!((summary.count, summary.p50, summary.max), (3, 20, 30));
    }
}
