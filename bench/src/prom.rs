//! Reading the collector's `GET /metrics` (Prometheus / OpenMetrics text):
//! samples by name and labels, and quantiles of a histogram from its
//! buckets.

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// The text between the braces, as written (`reason="overloaded"`).
    pub labels: String,
    pub value: f64,
}

/// Every sample of a scrape; comments and unreadable lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line[open..].find('}')? + open;
                    (&line[..open], &line[open + 1..close], &line[close + 1..])
                }
                None => {
                    let space = line.find(' ')?;
                    (&line[..space], "", &line[space..])
                }
            };
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some(Sample {
                name: name.to_owned(),
                labels: labels.to_owned(),
                value,
            })
        })
        .collect()
}

/// The sum of the samples named `name` whose labels contain `labels`
/// (every sample of the name when `labels` is empty); 0 when none.
pub fn value(samples: &[Sample], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.contains(labels))
        .map(|s| s.value)
        .sum()
}

/// A histogram's cumulative buckets, `(upper bound, count)` by bound,
/// `+Inf` last.
pub fn buckets(samples: &[Sample], histogram: &str) -> Vec<(f64, f64)> {
    let name = format!("{histogram}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter_map(|s| {
            let le = s
                .labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("le="))?;
            let le = le.trim_matches('"');
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, s.value))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile (0..=1) of cumulative `buckets`, interpolated linearly
/// within the bucket it falls in (from 0 for the first); a quantile in the
/// `+Inf` bucket is the last finite bound. `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(below.0);
            }
            let within = count - below.1;
            let share = if within > 0.0 {
                (rank - below.1) / within
            } else {
                1.0
            };
            return Some(below.0 + (bound - below.0) * share);
        }
        below = (bound, count);
    }
    Some(below.0)
}

/// The bounds `(lower, upper]` of the bucket the `q` quantile falls in:
/// what the histogram knows for sure, before any interpolation. `None`
/// without observations.
pub fn quantile_bucket(buckets: &[(f64, f64)], q: f64) -> Option<(f64, f64)> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let mut lower = 0.0;
    for &(bound, count) in buckets {
        if count >= q * total {
            return Some((lower, bound));
        }
        lower = bound;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# HELP x y\n\
        causeway_collector_requests_rejected_total{reason=\"overloaded\"} 3\n\
        causeway_collector_requests_rejected_total{reason=\"too_large\"} 1\n\
        causeway_collector_index_documents 1200\n\
        h_bucket{le=\"0.5\"} 10\n\
        h_bucket{le=\"1.0\"} 90\n\
        h_bucket{le=\"2.0\"} 100\n\
        h_bucket{le=\"+Inf\"} 100\n\
        h_count 100\n\
        # EOF\n";

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let samples = parse(SCRAPE);
        let rejected = "causeway_collector_requests_rejected_total";
        assert_eq!(value(&samples, rejected, "reason=\"overloaded\""), 3.0);
        assert_eq!(value(&samples, rejected, ""), 4.0);
        assert_eq!(
            value(&samples, "causeway_collector_index_documents", ""),
            1200.0
        );
        assert_eq!(value(&samples, "missing", ""), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = buckets(&parse(SCRAPE), "h");
        assert_eq!(buckets.len(), 4);
        assert_eq!(quantile(&buckets, 0.05), Some(0.25));
        assert_eq!(quantile(&buckets, 0.5), Some(0.75));
        assert_eq!(quantile(&buckets, 0.99), Some(1.9));
        let overflow = [(1.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(&overflow, 0.99), Some(1.0));
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(quantile_bucket(&buckets, 0.99), Some((1.0, 2.0)));
        assert_eq!(quantile_bucket(&buckets, 0.05), Some((0.0, 0.5)));
    }
}
