//! The query parameters of the API's routes and how they are read:
//! comma-separated lists, times (RFC 3339 or a span before now), field
//! filters written as quoted query terms. Reading only; no index access.

use causeway_model::{AnomalyKind, FlowStatus, Timestamp};
use serde::Deserialize;

use crate::error::RequestError;
use crate::list::FlowFilter;

/// A comma-separated list parameter, each item read by `parse`.
pub(crate) fn list_param<T>(
    name: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, RequestError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            parse(item).ok_or_else(|| {
                RequestError::BadRequest(format!(
                    "unknown {name} {:?}",
                    causeway_model::char_prefix(&causeway_model::strip_control(item), 64)
                ))
            })
        })
        .collect()
}

/// A time parameter: RFC 3339, or a span before now (`90s`, `15m`, `2h`,
/// `7d`).
pub(crate) fn time_param(
    name: &str,
    value: Option<&str>,
    now: Timestamp,
) -> Result<Option<Timestamp>, RequestError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = value.parse::<Timestamp>() {
        return Ok(Some(t));
    }
    let bad = || {
        RequestError::BadRequest(format!(
            "{name} must be an RFC 3339 time or a span before now such as 15m"
        ))
    };
    let (number, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_us: i64 = match unit {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    let span = n.checked_mul(unit_us).ok_or_else(bad)?;
    Ok(Some(Timestamp::from_micros(
        now.as_micros().saturating_sub(span),
    )))
}

/// The filters of `GET /api/v1/tail`: the flow list's, and `q` for the
/// records sent.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TailParams {
    /// Only flows in one of these statuses (comma-separated).
    #[param(value_type = Option<Vec<FlowStatus>>, style = Form, explode = false)]
    pub(crate) status: Option<String>,
    /// Only flows with one of these anomalies (comma-separated).
    #[param(value_type = Option<Vec<AnomalyKind>>, style = Form, explode = false)]
    pub(crate) anomaly: Option<String>,
    /// Only records of, and flows through, one of these services
    /// (comma-separated).
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub(crate) service: Option<String>,
    /// Only records of, and flows with an event of, one of these event
    /// types (comma-separated).
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub(crate) event_type: Option<String>,
    /// Only records matching this search (the query syntax of
    /// `/api/v1/search`); flows are not filtered by it.
    pub(crate) q: Option<String>,
}

impl TailParams {
    /// The filter of the flows sent.
    pub(crate) fn filter(&self, now: Timestamp) -> Result<FlowFilter, RequestError> {
        FlowsParams {
            status: self.status.clone(),
            anomaly: self.anomaly.clone(),
            service: self.service.clone(),
            event_type: self.event_type.clone(),
            ..FlowsParams::default()
        }
        .filter(now)
    }

    /// The search the records sent must match.
    pub(crate) fn record_query(&self) -> String {
        record_query(
            self.q.as_deref().unwrap_or_default(),
            &[
                ("service", self.service.as_deref()),
                ("event_type", self.event_type.as_deref()),
            ],
        )
        .unwrap_or_default()
    }
}

/// The user's query and the field filters, as one query string.
pub(crate) fn record_query(
    q: &str,
    fields: &[(&str, Option<&str>)],
) -> Result<String, RequestError> {
    let mut clauses = Vec::new();
    if !q.trim().is_empty() && q.trim() != "*" {
        clauses.push(format!("({q})"));
    }
    for (field, value) in fields {
        clauses.extend(field_clause(field, *value)?);
    }
    Ok(clauses.join(" AND "))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FlowsParams {
    /// Most flows on the page: 50 by default, at most `max_flows` (500 by
    /// default).
    pub(crate) limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// Only flows in one of these statuses (comma-separated).
    #[param(value_type = Option<Vec<FlowStatus>>, style = Form, explode = false)]
    pub(crate) status: Option<String>,
    /// Only flows with one of these anomalies (comma-separated).
    #[param(value_type = Option<Vec<AnomalyKind>>, style = Form, explode = false)]
    pub(crate) anomaly: Option<String>,
    /// Only flows through one of these services (comma-separated).
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub(crate) service: Option<String>,
    /// Only flows with an event of one of these types (comma-separated).
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub(crate) event_type: Option<String>,
    /// Only flows active at or after this time: RFC 3339, or a span before
    /// now (`90s`, `15m`, `2h`, `7d`, `500ms`).
    #[param(example = "15m")]
    pub(crate) since: Option<String>,
    /// Only flows started at or before this time: RFC 3339, or a span
    /// before now.
    #[param(example = "2026-11-22T12:00:00Z")]
    pub(crate) until: Option<String>,
    /// Only flows that lasted at least this long (last activity minus
    /// start).
    pub(crate) min_duration_ms: Option<u64>,
    /// Only flows with a record matching this search (the query syntax of
    /// `/api/v1/search`).
    pub(crate) q: Option<String>,
}

impl FlowsParams {
    pub(crate) fn filter(&self, now: Timestamp) -> Result<FlowFilter, RequestError> {
        let names =
            |value: &Option<String>| list_param("name", value.as_deref(), |s| Some(s.to_owned()));
        Ok(FlowFilter {
            statuses: list_param("status", self.status.as_deref(), FlowStatus::from_name)?,
            anomalies: list_param("anomaly", self.anomaly.as_deref(), AnomalyKind::from_name)?,
            services: names(&self.service)?,
            event_types: names(&self.event_type)?,
            since: time_param("since", self.since.as_deref(), now)?,
            until: time_param("until", self.until.as_deref(), now)?,
            min_duration_us: self.min_duration_ms.map(|ms| ms.saturating_mul(1_000)),
            q: self.q.clone().filter(|q| !q.trim().is_empty()),
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// The search, in tantivy's query syntax over the record fields
    /// (`payment AND stage:failed`); empty or `*` matches every record.
    #[serde(default)]
    #[param(example = "declined AND service:payment")]
    pub(crate) q: String,
    /// Most hits returned: 100 by default, at most `max_search_hits` (1,000
    /// by default).
    pub(crate) limit: Option<usize>,
    /// Only records of one of these services (comma-separated).
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub(crate) service: Option<String>,
    /// Only records of one of these event types (comma-separated).
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub(crate) event_type: Option<String>,
    /// Only records of one of these stages (comma-separated).
    #[param(value_type = Option<Vec<causeway_model::Stage>>, style = Form, explode = false)]
    pub(crate) stage: Option<String>,
    /// Only records of one of these levels (comma-separated, uppercase as
    /// records write them).
    #[param(value_type = Option<Vec<causeway_model::Level>>, style = Form, explode = false)]
    pub(crate) level: Option<String>,
    /// Only records at or after this time: RFC 3339, or a span before now
    /// (`90s`, `15m`, `2h`, `7d`, `500ms`).
    #[param(example = "1h")]
    pub(crate) since: Option<String>,
    /// Only records at or before this time: RFC 3339, or a span before
    /// now.
    pub(crate) until: Option<String>,
    /// Histogram buckets over `since..until` (default 60 when both or
    /// `since` are given).
    pub(crate) buckets: Option<usize>,
}

/// Most histogram buckets one search returns.
pub(crate) const MAX_BUCKETS: usize = 1_000;

/// `name:"value"` clauses, any of the comma-separated values.
pub(crate) fn field_clause(
    field: &str,
    value: Option<&str>,
) -> Result<Option<String>, RequestError> {
    let values = list_param(field, value, |s| Some(s.to_owned()))?;
    if values.is_empty() {
        return Ok(None);
    }
    let terms: Vec<String> = values
        .iter()
        .map(|v| {
            format!(
                "{field}:\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    Ok(Some(format!("({})", terms.join(" OR "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_span_before_now() {
        let now = Timestamp::from_micros(10_000_000_000);
        assert_eq!(
            time_param("since", Some("15m"), now).unwrap(),
            Some(Timestamp::from_micros(10_000_000_000 - 900_000_000))
        );
        assert_eq!(
            time_param("since", Some("2026-01-01T00:00:00Z"), now).unwrap(),
            Some(Timestamp::from_micros(1_767_225_600_000_000))
        );
        assert_eq!(time_param("since", None, now).unwrap(), None);
        for bad in ["15", "m", "15 parsecs", "99999999999999999999d", "-5m"] {
            assert!(time_param("since", Some(bad), now).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_filters_are_quoted_terms() {
        assert_eq!(
            field_clause("service", Some("pay\"ment, orders")).unwrap(),
            Some(r#"(service:"pay\"ment" OR service:"orders")"#.to_owned())
        );
        assert_eq!(field_clause("service", Some(" , ")).unwrap(), None);
    }
}
