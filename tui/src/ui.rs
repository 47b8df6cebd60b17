//! Painting the app: the flows table, one flow's summary and causal tree,
//! and the footer with the keys and the connection status. [`draw`] reads
//! the `App` and changes nothing; the screen's split comes from `layout`,
//! which `App::update` uses too, so paging and scrolling match what is on
//! screen. `App` must not depend on this module.

use std::time::Duration;

use causeway_model::{FlowStatus, FlowSummary};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Padding, Paragraph, Row, Table, TableState};

use crate::app::{App, DetailView, View};
use crate::client::FetchError;
use crate::format::{clean, duration, fit_list, time_of_day, time_of_day_ms};
use crate::layout::{detail_layout, list_layout};
use crate::{theme, tree};

const COLUMNS: [&str; 8] = [
    "status",
    "correlation id",
    "root event",
    "services",
    "events",
    "failures",
    "duration",
    "last activity",
];

/// Column widths: the id and root event columns as wide as their longest
/// value (within bounds), so that at 120 columns a UUIDv7 correlation id is
/// shown whole and the services column takes what is left.
fn widths(flows: &[FlowSummary]) -> [Constraint; 8] {
    let widest = |values: &mut dyn Iterator<Item = usize>, min: usize, max: usize| {
        let width = values.max().unwrap_or(0).clamp(min, max);
        Constraint::Length(u16::try_from(width).unwrap_or(u16::MAX))
    };
    let ids = &mut flows
        .iter()
        .map(|f| clean(&f.correlation_id).chars().count());
    let roots = &mut flows.iter().map(|f| {
        clean(f.root_event_type.as_deref().unwrap_or("?"))
            .chars()
            .count()
    });
    // The status column fits every status whole (`dead_lettered`, 13).
    let status = FlowStatus::ALL
        .iter()
        .map(|s| s.as_str().len())
        .max()
        .unwrap_or(COLUMNS[0].len());
    [
        Constraint::Length(u16::try_from(status).unwrap_or(u16::MAX)),
        widest(ids, COLUMNS[1].len(), 36),
        widest(roots, COLUMNS[2].len(), 24),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(13),
    ]
}

/// Paints the whole screen from the app's state.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    match app.view() {
        View::List => {
            let [body, footer] = list_layout(area);
            draw_list(frame, app, body);
            draw_footer(frame, app, footer);
        }
        View::Detail(view) => {
            let [summary, body, footer] = detail_layout(area);
            draw_summary(frame, view, summary);
            draw_tree(frame, view, body);
            draw_footer(frame, app, footer);
        }
    }
}

fn draw_list(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let flows = app.flows();
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" flows ", theme::TITLE),
            Span::raw(format!("({}) ", flows.len())),
        ]))
        .title(Line::from(" times in UTC ").right_aligned());
    if flows.is_empty() {
        let message = if app.connection().last_ok.is_some() {
            "no flows yet"
        } else {
            "waiting for the query API"
        };
        frame.render_widget(
            Paragraph::new(Span::styled(message, theme::DIM))
                .block(block.padding(Padding::horizontal(1))),
            area,
        );
        return;
    }
    let widths = widths(flows);
    let fixed: u16 = widths
        .iter()
        .map(|c| match c {
            Constraint::Length(n) => *n,
            _ => 0,
        })
        .sum();
    // Borders, the highlight symbol and one space between columns.
    let services_width = usize::from(area.width.saturating_sub(fixed + 2 + 2 + 7));
    let header = Row::new(COLUMNS).style(theme::HEADER);
    let rows = flows.iter().map(|flow| flow_row(flow, services_width));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(theme::SELECTED)
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::new()
        .with_offset(app.list_offset())
        .with_selected(app.selected());
    frame.render_stateful_widget(table, area, &mut state);
}

fn flow_row(flow: &FlowSummary, services_width: usize) -> Row<'static> {
    let right = |text: String| Cell::from(Line::from(text).right_aligned());
    let failures = if flow.failure_count > 0 {
        Cell::from(Line::from(flow.failure_count.to_string()).right_aligned()).style(theme::ERROR)
    } else {
        right(flow.failure_count.to_string())
    };
    Row::new(vec![
        Cell::from(Span::styled(
            flow.status.as_str(),
            theme::flow_status(flow.status),
        )),
        Cell::from(clean(&flow.correlation_id)),
        Cell::from(clean(flow.root_event_type.as_deref().unwrap_or("?"))),
        Cell::from(fit_list(&flow.services, services_width)),
        right(flow.event_count.to_string()),
        failures,
        right(duration(flow.duration_us)),
        right(time_of_day_ms(flow.last_activity_at)),
    ])
}

fn draw_summary(frame: &mut Frame<'_>, view: &DetailView, area: Rect) {
    let summary = view.summary();
    let block = Block::bordered()
        .padding(Padding::horizontal(1))
        .title(Line::from(vec![
            Span::styled(" flow ", theme::TITLE),
            Span::raw(format!("{} ", clean(&view.correlation_id))),
        ]));
    let first = Line::from(vec![
        Span::styled(summary.status.as_str(), theme::flow_status(summary.status)),
        Span::raw("  "),
        Span::styled(
            clean(summary.root_event_type.as_deref().unwrap_or("?")),
            theme::EVENT_TYPE,
        ),
        Span::styled("  started ", theme::DIM),
        Span::raw(time_of_day_ms(summary.started_at)),
        Span::styled("  last activity ", theme::DIM),
        Span::raw(time_of_day_ms(summary.last_activity_at)),
        Span::styled(" UTC  duration ", theme::DIM),
        Span::raw(duration(summary.duration_us)),
    ]);
    let failures = Span::styled(
        summary.failure_count.to_string(),
        if summary.failure_count > 0 {
            theme::ERROR
        } else {
            theme::OK
        },
    );
    let second = Line::from(vec![
        Span::styled("events ", theme::DIM),
        Span::raw(summary.event_count.to_string()),
        Span::styled("  failures ", theme::DIM),
        failures,
        Span::styled("  records ", theme::DIM),
        Span::raw(summary.record_count.to_string()),
        Span::styled("  services ", theme::DIM),
        Span::styled(clean(&summary.services.join(", ")), theme::SERVICE),
    ]);
    frame.render_widget(Paragraph::new(vec![first, second]).block(block), area);
}

fn draw_tree(frame: &mut Frame<'_>, view: &DetailView, area: Rect) {
    let mut block = Block::bordered()
        .padding(Padding::horizontal(1))
        .title(Line::from(Span::styled(" causal tree ", theme::TITLE)));
    let Some(detail) = &view.detail else {
        let message = match &view.error {
            None => Line::from(Span::styled("loading…", theme::DIM)),
            Some(error) if error.is_not_found() => Line::from(Span::styled(
                format!("flow not found: {}", error_text(error)),
                theme::ERROR,
            )),
            Some(error) => Line::from(Span::styled(
                format!("could not load the flow: {}", error_text(error)),
                theme::ERROR,
            )),
        };
        frame.render_widget(Paragraph::new(message).block(block), area);
        return;
    };
    if let Some(error) = &view.error {
        block = block.title(Line::from(Span::styled(
            format!(" last update failed: {} ", error_text(error)),
            theme::ERROR,
        )));
    }
    let lines = tree::lines(detail);
    let rows = usize::from(area.height.saturating_sub(2));
    if lines.len() > rows {
        let first = view.scroll.min(lines.len() - rows);
        block = block.title(
            Line::from(format!(
                " {}-{} of {} ",
                first + 1,
                first + rows,
                lines.len()
            ))
            .right_aligned(),
        );
    }
    let visible: Vec<Line<'static>> = lines.into_iter().skip(view.scroll).take(rows).collect();
    frame.render_widget(Paragraph::new(Text::from(visible)).block(block), area);
}

/// A refresh interval as the footer says it: `2s`, `1.5s`, `250ms`.
fn interval(every: Duration) -> String {
    let ms = every.as_millis();
    if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else if ms > 1_000 {
        format!("{:.1}s", every.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

/// A fetch error as safe text: its parts may come from the API.
fn error_text(error: &FetchError) -> String {
    match error {
        FetchError::Api { message, .. } if error.is_not_found() => clean(message),
        other => clean(&other.to_string()),
    }
}

fn draw_footer(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let connection = app.connection();
    let url = clean(app.query_url());
    let status = match (&connection.problem, connection.last_ok) {
        (Some(problem), last_ok) => {
            let what = if problem.is_unreachable() {
                "query API unreachable: "
            } else {
                "query API error: "
            };
            let last = last_ok.map_or_else(
                || "never reached".to_owned(),
                |at| format!("last refresh {} UTC", time_of_day(at)),
            );
            Line::from(vec![
                Span::styled(format!("● {what}"), theme::ERROR),
                Span::styled(error_text(problem), theme::ERROR),
                Span::styled(
                    format!(" · retrying every {} · {last}", interval(app.refresh())),
                    theme::DIM,
                ),
            ])
        }
        (None, Some(at)) => Line::from(vec![
            Span::styled("● ", theme::OK),
            Span::raw(format!("connected to {url}")),
            Span::styled(
                format!(" · last refresh {} UTC", time_of_day(at)),
                theme::DIM,
            ),
        ]),
        (None, None) => Line::from(vec![
            Span::styled("○ ", theme::PENDING),
            Span::raw(format!("connecting to {url}…")),
        ]),
    };
    let keys: &[(&str, &str)] = match app.view() {
        View::List => &[
            ("j/k", "move"),
            ("g/G", "top/bottom"),
            ("enter", "open"),
            ("r", "refresh"),
            ("q", "quit"),
        ],
        View::Detail(_) => &[
            ("j/k", "scroll"),
            ("g/G", "top/bottom"),
            ("esc", "back"),
            ("r", "refresh"),
            ("q", "quit"),
        ],
    };
    let mut help = Vec::new();
    for (i, (key, what)) in keys.iter().enumerate() {
        if i > 0 {
            help.push(Span::raw("  "));
        }
        help.push(Span::styled(*key, theme::KEY));
        help.push(Span::styled(format!(" {what}"), theme::DIM));
    }
    frame.render_widget(Paragraph::new(vec![status, Line::from(help)]), area);
}

#[cfg(test)]
mod tests {
    use causeway_model::{FlowStatus, FlowsPage};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;

    use super::*;
    use crate::action::Action;
    use crate::fixtures;
    use crate::worker::Fetched;

    fn app(width: u16, height: u16) -> App {
        let mut app = App::new("http://127.0.0.1:8686", Duration::from_secs(2));
        app.update(Action::Resize { width, height });
        app
    }

    fn listed(app: &mut App, page: FlowsPage) {
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(10_000),
            result: Ok(page),
        }));
    }

    fn render(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        terminal
    }

    fn screen_text(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn list_of_three_flows() {
        let mut app = app(140, 9);
        listed(&mut app, fixtures::three_flows());
        app.update(Action::Down);
        let terminal = render(&app, 140, 9);
        insta::assert_snapshot!(terminal.backend());

        // Statuses are coloured: the failed flow's status cell is red.
        let buffer = terminal.backend().buffer();
        assert_eq!(buffer[(3, 2)].symbol(), "f");
        assert_eq!(buffer[(3, 2)].fg, Color::Red);
        assert_eq!(buffer[(3, 3)].fg, Color::Green);
        assert_eq!(buffer[(3, 4)].fg, Color::Yellow);
    }

    #[test]
    fn every_status_is_shown_whole_in_the_list() {
        let flows = FlowStatus::ALL
            .iter()
            .enumerate()
            .map(|(i, status)| fixtures::summary(&format!("flow-{i}"), *status))
            .collect();
        let mut app = app(120, 12);
        listed(
            &mut app,
            FlowsPage {
                flows,
                ..fixtures::three_flows()
            },
        );
        let screen = render(&app, 120, 12).backend().to_string();
        for (i, status) in FlowStatus::ALL.iter().enumerate() {
            let row = screen
                .lines()
                .find(|line| line.contains(&format!("flow-{i} ")))
                .unwrap_or_else(|| panic!("flow-{i} missing:\n{screen}"));
            assert!(
                row.contains(&format!("{} ", status.as_str())),
                "{status:?} cut:\n{screen}"
            );
        }
    }

    #[test]
    fn detail_of_a_flow_with_a_failed_payment() {
        let mut app = app(120, 18);
        listed(&mut app, fixtures::three_flows());
        app.update(Action::Open);
        app.update(Action::Fetched(Fetched::Detail {
            correlation_id: fixtures::FAILED_FLOW.to_owned(),
            at: fixtures::at(10_000),
            result: Ok(Box::new(fixtures::failed_payment_detail())),
        }));
        insta::assert_snapshot!(render(&app, 120, 18).backend());
    }

    #[test]
    fn a_flow_that_is_not_found_says_so() {
        let mut app = app(100, 10);
        listed(&mut app, fixtures::three_flows());
        app.update(Action::Open);
        app.update(Action::Fetched(Fetched::Detail {
            correlation_id: fixtures::FAILED_FLOW.to_owned(),
            at: fixtures::at(10_000),
            result: Err(FetchError::Api {
                status: 404,
                code: "not_found".into(),
                message: "no records for this flow".into(),
            }),
        }));
        let text = screen_text(&render(&app, 100, 10));
        assert!(
            text.contains("flow not found: no records for this flow"),
            "{text}"
        );
    }

    #[test]
    fn the_refresh_interval_is_said_in_the_largest_fitting_unit() {
        assert_eq!(interval(Duration::from_secs(2)), "2s");
        assert_eq!(interval(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(interval(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn footer_when_the_query_api_is_unreachable() {
        let mut app = app(120, 9);
        listed(&mut app, fixtures::three_flows());
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(12_000),
            result: Err(FetchError::Unreachable(
                "Connection refused (os error 111)".into(),
            )),
        }));
        insta::assert_snapshot!(render(&app, 120, 9).backend());
    }

    #[test]
    fn before_the_first_answer_the_list_waits() {
        let mut app = app(100, 6);
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(12_000),
            result: Err(FetchError::Unreachable(
                "Connection refused (os error 111)".into(),
            )),
        }));
        let text = screen_text(&render(&app, 100, 6));
        assert!(text.contains("waiting for the query API"), "{text}");
        assert!(
            text.contains("query API unreachable: Connection refused (os error 111) · retrying every 2s · never reached"),
            "{text}"
        );
    }

    #[test]
    fn escape_sequences_and_newlines_from_the_api_never_reach_the_screen() {
        let hostile = "Order\u{1b}[31mPlaced\r\nInjected";
        let mut page = FlowsPage {
            flows: vec![fixtures::summary("order-1", FlowStatus::Failed)],
            next_cursor: None,
            scanned: 0,
            scan_limited: false,
        };
        page.flows[0].root_event_type = Some(hostile.to_owned());
        page.flows[0].services = vec!["pay\u{1b}]0;pwned\u{7}ments\r\n".to_owned()];
        let mut detail = fixtures::failed_payment_detail();
        detail.summary = page.flows[0].clone();
        detail.roots[0].event_type = Some(hostile.to_owned());
        detail.roots[0].consumers[1].error = Some("boom\u{1b}[2J\r\nrm -rf".to_owned());

        let mut app = app(120, 18);
        listed(&mut app, page);
        let list = screen_text(&render(&app, 120, 18));
        app.update(Action::Open);
        app.update(Action::Fetched(Fetched::Detail {
            correlation_id: "order-1".to_owned(),
            at: fixtures::at(10_000),
            result: Ok(Box::new(detail)),
        }));
        let detail = screen_text(&render(&app, 120, 18));

        for screen in [&list, &detail] {
            assert!(
                !screen.contains(['\u{1b}', '\r', '\u{7}']),
                "control characters on screen:\n{screen}"
            );
            assert!(
                !screen.contains("[31m") && !screen.contains("pwned"),
                "{screen}"
            );
            assert!(screen.contains("OrderPlaced  Injected"), "{screen}");
        }
        assert!(list.contains("payments"), "{list}");
        assert!(detail.contains("boom  rm -rf"), "{detail}");
        assert!(!detail.contains("[2J"), "{detail}");
    }
}
