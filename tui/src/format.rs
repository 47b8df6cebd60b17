//! Short, safe screen text from API values: durations, times of day,
//! shortened event ids, and [`clean`], the filter every API string passes
//! through. It formats values; it never decides layout or colour.

use causeway_model::{Timestamp, strip_control};

/// API text made safe to print: no escape sequences, no control characters.
pub(crate) fn clean(text: &str) -> String {
    strip_control(text)
}

pub(crate) use causeway_model::human_duration as duration;

/// Cleaned items joined with `, ` within `width` characters; the ones that
/// do not fit are counted instead of silently cut: `inventory, orders +2`.
pub(crate) fn fit_list(items: &[String], width: usize) -> String {
    let items: Vec<String> = items.iter().map(|item| clean(item)).collect();
    let mut shown = String::new();
    for (i, item) in items.iter().enumerate() {
        let candidate = if shown.is_empty() {
            item.clone()
        } else {
            format!("{shown}, {item}")
        };
        let after = items.len() - i - 1;
        let suffix_len = if after > 0 {
            format!(" +{after}").len()
        } else {
            0
        };
        if candidate.chars().count() + suffix_len > width {
            // The previous round checked that `shown` plus this count fits.
            let left = items.len() - i;
            if !shown.is_empty() {
                return format!("{shown} +{left}");
            }
            // Not even the first fits: cut it, keep the count of the others.
            let suffix = if after > 0 {
                format!(" +{after}")
            } else {
                String::new()
            };
            let room = width.saturating_sub(suffix.len() + 1);
            if room == 0 {
                return format!("+{left}");
            }
            let cut: String = item.chars().take(room).collect();
            return format!("{cut}…{suffix}");
        }
        shown = candidate;
    }
    shown
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn day_parts(at: Timestamp) -> (i64, i64, i64, i64) {
    let micros = at.as_micros().rem_euclid(MICROS_PER_DAY);
    let millis = micros / 1_000;
    let secs = millis / 1_000;
    (secs / 3_600, (secs / 60) % 60, secs % 60, millis % 1_000)
}

/// The UTC time of day with milliseconds: `12:00:01.234`.
pub(crate) fn time_of_day_ms(at: Timestamp) -> String {
    let (h, m, s, ms) = day_parts(at);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// The UTC time of day to the second: `12:00:01`.
pub(crate) fn time_of_day(at: Timestamp) -> String {
    let (h, m, s, _) = day_parts(at);
    format!("{h:02}:{m:02}:{s:02}")
}

/// A cleaned event id short enough for a tree line. Our ids are UUIDv7,
/// whose leading digits are a timestamp shared by every event of a flow,
/// so the distinguishing tail is kept rather than the head.
pub(crate) fn short_id(id: &str) -> String {
    const KEEP: usize = 8;
    let id = clean(id);
    let len = id.chars().count();
    if len <= KEEP + 4 {
        return id;
    }
    let tail: String = id.chars().skip(len - KEEP).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_are_utc() {
        let at: Timestamp = "2026-11-22T13:04:05.678901+01:00".parse().unwrap();
        assert_eq!(time_of_day_ms(at), "12:04:05.678");
        assert_eq!(time_of_day(at), "12:04:05");
    }

    #[test]
    fn lists_count_what_does_not_fit() {
        let items: Vec<String> = ["inventory", "orders", "payments"]
            .map(String::from)
            .to_vec();
        assert_eq!(fit_list(&items, 40), "inventory, orders, payments");
        assert_eq!(fit_list(&items, 27), "inventory, orders, payments");
        assert_eq!(fit_list(&items, 26), "inventory, orders +1");
        assert_eq!(fit_list(&items, 12), "inventory +2");
        assert_eq!(fit_list(&items, 9), "inven… +2");
        assert_eq!(fit_list(&items, 4), "+3");
        assert_eq!(fit_list(&items[..1], 6), "inven…");
        assert_eq!(fit_list(&[], 5), "");
    }

    #[test]
    fn long_ids_keep_their_tail() {
        assert_eq!(
            short_id("01975c2a-1f00-7000-8000-0000a1b2c3d4"),
            "…a1b2c3d4"
        );
        assert_eq!(short_id("evt-42"), "evt-42");
    }
}
