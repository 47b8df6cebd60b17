//! One flow as screen lines: first what is wrong with it (its anomalies,
//! one line each), then its causal tree: each event, under it the
//! consumers that received it, under each consumer the events it published
//! while handling it, drawn with tree glyphs. Detail in, lines out: no
//! state, no layout. Every API string is cleaned on its way into a line.

use causeway_model::{Anomaly, ConsumerStep, FlowDetail, FlowEvent, Stage};
use ratatui::text::{Line, Span};

use crate::format::{clean, duration, short_id};
use crate::theme;

const BRANCH: &str = "├─ ";
const LAST_BRANCH: &str = "└─ ";
const PIPE: &str = "│  ";
const SPACE: &str = "   ";

/// The anomalies, then every line of the tree, roots oldest first, a
/// blank line between roots.
pub(crate) fn lines(detail: &FlowDetail) -> Vec<Line<'static>> {
    let mut out: Vec<Line<'static>> = detail.anomalies.iter().map(anomaly).collect();
    if !out.is_empty() {
        out.push(Line::default());
    }
    for (i, root) in detail.roots.iter().enumerate() {
        if i > 0 {
            out.push(Line::default());
        }
        event(&mut out, root, "", "");
    }
    out
}

/// `! kind  message`, the kind in the colour of trouble.
fn anomaly(anomaly: &Anomaly) -> Line<'static> {
    Line::from(vec![
        Span::styled("! ", theme::ERROR),
        Span::styled(anomaly.kind.as_str(), theme::PENDING),
        Span::raw("  "),
        Span::raw(clean(&anomaly.message)),
    ])
}

/// `lead` goes before this node's own line, `indent` before its children's.
fn event(out: &mut Vec<Line<'static>>, event: &FlowEvent, lead: &str, indent: &str) {
    let event_type = event.event_type.as_deref().unwrap_or("(unknown type)");
    let route = format!(
        "({} -> {})",
        clean(event.publisher.as_deref().unwrap_or("?")),
        clean(event.destination.as_deref().unwrap_or("?")),
    );
    out.push(Line::from(vec![
        Span::styled(lead.to_owned(), theme::GLYPH),
        Span::styled(clean(event_type), theme::EVENT_TYPE),
        Span::raw("  "),
        Span::raw(route),
        Span::raw("  "),
        Span::styled(short_id(event.event_id.as_str()), theme::DIM),
    ]));
    if event.consumers.is_empty() {
        out.push(Line::from(vec![
            Span::styled(format!("{indent}{LAST_BRANCH}"), theme::GLYPH),
            Span::styled("no consumer seen yet", theme::DIM),
        ]));
    }
    let count = event.consumers.len();
    for (i, step) in event.consumers.iter().enumerate() {
        let (branch, next) = if i + 1 == count {
            (LAST_BRANCH, SPACE)
        } else {
            (BRANCH, PIPE)
        };
        consumer(
            out,
            step,
            &format!("{indent}{branch}"),
            &format!("{indent}{next}"),
        );
    }
}

fn consumer(out: &mut Vec<Line<'static>>, step: &ConsumerStep, lead: &str, indent: &str) {
    let mut name = clean(&step.service);
    if let Some(group) = &step.consumer_group {
        name = format!("{name}[{}]", clean(group));
    }
    let mut spans = vec![
        Span::styled(lead.to_owned(), theme::GLYPH),
        Span::styled(name, theme::SERVICE),
        Span::raw("  "),
        Span::styled(step.status.as_str(), theme::step_status(step.status)),
    ];
    if let Some(us) = step.queue_wait_us {
        spans.push(Span::raw(format!("  wait {}", duration(us))));
    }
    if let Some(us) = step.processing_us {
        spans.push(Span::raw(format!("  processing {}", duration(us))));
    }
    let retries = step.stages.iter().filter(|s| **s == Stage::Retried).count();
    if retries > 0 {
        spans.push(Span::raw(format!("  retried {retries}×")));
    }
    if let Some(error) = &step.error {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(clean(error), theme::ERROR));
    }
    out.push(Line::from(spans));

    let count = step.children.len();
    for (i, child) in step.children.iter().enumerate() {
        let (branch, next) = if i + 1 == count {
            (LAST_BRANCH, SPACE)
        } else {
            (BRANCH, PIPE)
        };
        event(
            out,
            child,
            &format!("{indent}{branch}"),
            &format!("{indent}{next}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn text(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn anomalies_come_first_then_events_consumers_and_children_nest_with_glyphs() {
        let lines = text(&lines(&fixtures::failed_payment_detail()));
        assert!(
            lines[0].starts_with("! redelivery  payments[payments] received OrderPlaced 2 times"),
            "{}",
            lines[0]
        );
        assert!(
            !lines[0].contains('\u{1b}'),
            "a control character reached the screen"
        );
        assert_eq!(lines[1], "");
        let lines = &lines[2..];
        assert_eq!(
            lines[0],
            "OrderPlaced  (orders -> orders.placed)  …e0000001"
        );
        assert!(lines[1].starts_with("├─ inventory[inventory-reservations]  handled  wait 1.2ms"));
        assert!(lines[2].starts_with("│  └─ StockReserved"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("└─ payments[payments]  failed")
                    && l.ends_with("CardDeclined: card declined by issuer"))
        );
        assert!(lines.last().unwrap().ends_with("└─ no consumer seen yet"));
    }
}
