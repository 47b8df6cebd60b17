//! The TUI's state and the one place it changes: [`App::update`] takes an
//! [`Action`] and returns what the worker should be asked next, if
//! anything. It does no I/O, reads no clock and draws nothing, so it is
//! tested as plain data; `ui::draw` reads it and never writes it.

use std::time::Duration;

use causeway_model::{FlowDetail, FlowSummary, Timestamp};
use ratatui::layout::Rect;

use crate::action::Action;
use crate::client::FetchError;
use crate::worker::{Fetched, Request};
use crate::{layout, tree};

/// Everything the screen shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct App {
    query_url: String,
    /// How often the worker fetches again, for the footer to say.
    refresh: Duration,
    flows: Vec<FlowSummary>,
    selected: usize,
    /// The first flow row on screen.
    list_offset: usize,
    view: View,
    connection: Connection,
    /// The terminal's size, which `update` needs for paging and scrolling.
    area: Rect,
    should_quit: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum View {
    List,
    Detail(Box<DetailView>),
}

/// One flow, opened from the list and followed live.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DetailView {
    pub(crate) correlation_id: String,
    /// The list's line for the flow, shown until the detail arrives.
    listed: FlowSummary,
    pub(crate) detail: Option<FlowDetail>,
    /// The last fetch of this flow failed (the detail shown, if any, is older).
    pub(crate) error: Option<FetchError>,
    /// The first tree line on screen.
    pub(crate) scroll: usize,
    line_count: usize,
}

impl DetailView {
    /// The freshest summary known for the flow.
    pub(crate) fn summary(&self) -> &FlowSummary {
        self.detail.as_ref().map_or(&self.listed, |d| &d.summary)
    }
}

/// How the last exchanges with the query API went.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Connection {
    /// When the API last answered successfully.
    pub(crate) last_ok: Option<Timestamp>,
    /// Set while the latest attempt failed.
    pub(crate) problem: Option<FetchError>,
}

impl App {
    pub(crate) fn new(query_url: &str, refresh: Duration) -> Self {
        Self {
            query_url: query_url.trim_end_matches('/').to_owned(),
            refresh,
            flows: Vec::new(),
            selected: 0,
            list_offset: 0,
            view: View::List,
            connection: Connection::default(),
            area: Rect::default(),
            should_quit: false,
        }
    }

    pub(crate) fn refresh(&self) -> Duration {
        self.refresh
    }

    pub(crate) fn query_url(&self) -> &str {
        &self.query_url
    }

    pub(crate) fn flows(&self) -> &[FlowSummary] {
        &self.flows
    }

    /// The selected row, `None` when the list is empty.
    pub(crate) fn selected(&self) -> Option<usize> {
        (!self.flows.is_empty()).then_some(self.selected)
    }

    pub(crate) fn selected_flow(&self) -> Option<&FlowSummary> {
        self.flows.get(self.selected)
    }

    pub(crate) fn list_offset(&self) -> usize {
        self.list_offset
    }

    pub(crate) fn view(&self) -> &View {
        &self.view
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    pub(crate) fn should_quit(&self) -> bool {
        self.should_quit
    }

    /// Applies one action; the returned request is for the worker.
    pub(crate) fn update(&mut self, action: Action) -> Option<Request> {
        match action {
            Action::Quit => self.should_quit = true,
            Action::Refresh => return Some(Request::RefreshNow),
            Action::Resize { width, height } => {
                self.area = Rect::new(0, 0, width, height);
                self.keep_selection_visible();
                self.clamp_scroll();
            }
            Action::Open => return self.open(),
            Action::Back => return self.back(),
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom => self.navigate(&action),
            Action::Fetched(fetched) => self.apply(fetched),
        }
        None
    }

    fn open(&mut self) -> Option<Request> {
        if !matches!(self.view, View::List) {
            return None;
        }
        let listed = self.selected_flow()?.clone();
        let correlation_id = listed.correlation_id.clone();
        self.view = View::Detail(Box::new(DetailView {
            correlation_id: correlation_id.clone(),
            listed,
            detail: None,
            error: None,
            scroll: 0,
            line_count: 0,
        }));
        Some(Request::Follow(Some(correlation_id)))
    }

    fn back(&mut self) -> Option<Request> {
        if matches!(self.view, View::List) {
            return None;
        }
        self.view = View::List;
        self.keep_selection_visible();
        Some(Request::Follow(None))
    }

    fn navigate(&mut self, action: &Action) {
        match &mut self.view {
            View::List => {
                let last = self.flows.len().saturating_sub(1);
                let page = layout::list_rows(self.area);
                self.selected = moved(self.selected, action, page, last);
                self.keep_selection_visible();
            }
            View::Detail(detail) => {
                let page = layout::tree_rows(self.area);
                let last = max_scroll(detail.line_count, page);
                detail.scroll = moved(detail.scroll, action, page, last);
            }
        }
    }

    fn apply(&mut self, fetched: Fetched) {
        match fetched {
            Fetched::Flows { at, result } => match result {
                Ok(page) => {
                    let kept = self.selected_flow().map(|f| f.correlation_id.clone());
                    self.flows = page.flows;
                    self.selected = kept
                        .and_then(|id| self.flows.iter().position(|f| f.correlation_id == id))
                        .unwrap_or(self.selected)
                        .min(self.flows.len().saturating_sub(1));
                    self.keep_selection_visible();
                    self.connected(at);
                }
                Err(error) => self.connection.problem = Some(error),
            },
            Fetched::Detail {
                correlation_id,
                at,
                result,
            } => {
                let View::Detail(view) = &mut self.view else {
                    return;
                };
                // An answer for a flow that is no longer open.
                if view.correlation_id != correlation_id {
                    return;
                }
                match result {
                    Ok(detail) => {
                        view.line_count = tree::lines(&detail).len();
                        view.detail = Some(*detail);
                        view.error = None;
                        self.clamp_scroll();
                        self.connected(at);
                    }
                    Err(error) => {
                        if error.is_unreachable() {
                            self.connection.problem = Some(error.clone());
                        }
                        view.error = Some(error);
                    }
                }
            }
        }
    }

    fn connected(&mut self, at: Timestamp) {
        self.connection = Connection {
            last_ok: Some(at),
            problem: None,
        };
    }

    fn keep_selection_visible(&mut self) {
        let rows = layout::list_rows(self.area);
        if rows == 0 {
            return;
        }
        if self.selected < self.list_offset {
            self.list_offset = self.selected;
        } else if self.selected >= self.list_offset + rows {
            self.list_offset = self.selected + 1 - rows;
        }
        self.list_offset = self.list_offset.min(self.flows.len().saturating_sub(rows));
    }

    fn clamp_scroll(&mut self) {
        let rows = layout::tree_rows(self.area);
        if let View::Detail(view) = &mut self.view {
            view.scroll = view.scroll.min(max_scroll(view.line_count, rows));
        }
    }
}

/// The largest useful scroll: the last screenful of lines.
fn max_scroll(line_count: usize, rows: usize) -> usize {
    line_count.saturating_sub(rows.max(1))
}

/// A position after a motion, between 0 and `last`.
fn moved(current: usize, action: &Action, page: usize, last: usize) -> usize {
    let page = page.max(1);
    let next = match action {
        Action::Up => current.saturating_sub(1),
        Action::Down => current.saturating_add(1),
        Action::PageUp => current.saturating_sub(page),
        Action::PageDown => current.saturating_add(page),
        Action::Top => 0,
        Action::Bottom => last,
        _ => current,
    };
    next.min(last)
}

#[cfg(test)]
mod tests {
    use causeway_model::{FlowStatus, FlowsPage};

    use super::*;
    use crate::fixtures;

    fn app_with(flows: FlowsPage) -> App {
        let mut app = App::new("http://127.0.0.1:8686/", Duration::from_secs(2));
        app.update(Action::Resize {
            width: 120,
            height: 30,
        });
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(10_000),
            result: Ok(flows),
        }));
        app
    }

    fn selected_id(app: &App) -> &str {
        &app.selected_flow().unwrap().correlation_id
    }

    fn many_flows(n: usize) -> FlowsPage {
        let flows = (0..n)
            .map(|i| fixtures::summary(&format!("flow-{i:03}"), FlowStatus::Completed))
            .collect();
        FlowsPage {
            flows,
            next_cursor: None,
            scanned: 0,
            scan_limited: false,
        }
    }

    #[test]
    fn j_k_and_g_move_the_selection_within_the_list() {
        let mut app = app_with(fixtures::three_flows());
        assert_eq!(app.selected(), Some(0));
        app.update(Action::Up);
        assert_eq!(app.selected(), Some(0), "stays on the first row");
        app.update(Action::Down);
        app.update(Action::Down);
        assert_eq!(app.selected(), Some(2));
        app.update(Action::Down);
        assert_eq!(app.selected(), Some(2), "stays on the last row");
        app.update(Action::Top);
        assert_eq!(app.selected(), Some(0));
        app.update(Action::Bottom);
        assert_eq!(app.selected(), Some(2));
        app.update(Action::Up);
        assert_eq!(app.selected(), Some(1));
    }

    #[test]
    fn an_empty_list_has_no_selection_and_nothing_to_open() {
        let mut app = app_with(FlowsPage {
            flows: vec![],
            next_cursor: None,
            scanned: 0,
            scan_limited: false,
        });
        app.update(Action::Down);
        assert_eq!(app.selected(), None);
        assert_eq!(app.update(Action::Open), None);
        assert_eq!(app.view(), &View::List);
    }

    #[test]
    fn the_selection_follows_its_flow_across_a_refresh() {
        let mut app = app_with(fixtures::three_flows());
        app.update(Action::Down);
        let id = selected_id(&app).to_owned();

        // Newer activity elsewhere pushes the selected flow down the list.
        let mut page = fixtures::three_flows();
        page.flows
            .insert(0, fixtures::summary("brand-new", FlowStatus::InProgress));
        page.flows.swap(1, 2);
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(12_000),
            result: Ok(page),
        }));

        assert_eq!(selected_id(&app), id);
        assert_eq!(app.selected(), Some(1));
    }

    #[test]
    fn a_vanished_selection_stays_at_its_row_within_the_list() {
        let mut app = app_with(fixtures::three_flows());
        app.update(Action::Bottom);
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(12_000),
            result: Ok(FlowsPage {
                flows: fixtures::three_flows().flows[..1].to_vec(),
                next_cursor: None,
                scanned: 0,
                scan_limited: false,
            }),
        }));
        assert_eq!(app.selected(), Some(0));
    }

    #[test]
    fn a_failed_refresh_keeps_the_list_and_reports_the_problem() {
        let mut app = app_with(fixtures::three_flows());
        let error = FetchError::Unreachable("Connection refused (os error 111)".into());
        app.update(Action::Fetched(Fetched::Flows {
            at: fixtures::at(12_000),
            result: Err(error.clone()),
        }));
        assert_eq!(app.flows().len(), 3);
        assert_eq!(app.connection().problem, Some(error));
        assert_eq!(app.connection().last_ok, Some(fixtures::at(10_000)));
    }

    #[test]
    fn moving_down_a_long_list_scrolls_it() {
        let mut app = app_with(many_flows(100));
        let rows = layout::list_rows(app.area);
        assert!(rows > 0 && rows < 100);
        for _ in 0..rows {
            app.update(Action::Down);
        }
        assert_eq!(app.selected(), Some(rows));
        assert_eq!(app.list_offset(), 1);
        app.update(Action::Bottom);
        assert_eq!(app.list_offset(), 100 - rows);
        app.update(Action::PageUp);
        assert_eq!(app.selected(), Some(99 - rows));
        assert_eq!(app.list_offset(), 99 - rows);
    }

    #[test]
    fn enter_opens_the_selected_flow_and_follows_it() {
        let mut app = app_with(fixtures::three_flows());
        app.update(Action::Down);
        let id = selected_id(&app).to_owned();

        let request = app.update(Action::Open);

        assert_eq!(request, Some(Request::Follow(Some(id.clone()))));
        let View::Detail(view) = app.view() else {
            panic!("expected the detail view");
        };
        assert_eq!(view.correlation_id, id);
        assert_eq!(view.detail, None, "loading until the worker answers");
        assert_eq!(view.summary().correlation_id, id);
    }

    #[test]
    fn the_detail_arrives_and_answers_for_other_flows_are_ignored() {
        let mut app = app_with(fixtures::three_flows());
        app.update(Action::Open);
        let detail = fixtures::failed_payment_detail();
        assert_eq!(detail.summary.correlation_id, selected_id(&app));

        app.update(Action::Fetched(Fetched::Detail {
            correlation_id: "someone-else".into(),
            at: fixtures::at(12_000),
            result: Ok(Box::new(fixtures::failed_payment_detail())),
        }));
        let View::Detail(view) = app.view() else {
            panic!()
        };
        assert_eq!(view.detail, None);

        app.update(Action::Fetched(Fetched::Detail {
            correlation_id: detail.summary.correlation_id.clone(),
            at: fixtures::at(12_000),
            result: Ok(Box::new(detail.clone())),
        }));
        let View::Detail(view) = app.view() else {
            panic!()
        };
        assert_eq!(view.detail.as_ref(), Some(&detail));
    }

    #[test]
    fn j_k_scroll_the_detail_within_its_lines() {
        let mut app = app_with(fixtures::three_flows());
        app.update(Action::Resize {
            width: 120,
            height: 12,
        });
        app.update(Action::Open);
        let detail = fixtures::failed_payment_detail();
        let lines = tree::lines(&detail).len();
        let rows = layout::tree_rows(app.area);
        assert!(lines > rows, "{lines} lines fit in {rows} rows");
        app.update(Action::Fetched(Fetched::Detail {
            correlation_id: detail.summary.correlation_id.clone(),
            at: fixtures::at(12_000),
            result: Ok(Box::new(detail)),
        }));
        let scroll = |app: &App| match app.view() {
            View::Detail(view) => view.scroll,
            View::List => panic!("expected the detail view"),
        };

        app.update(Action::Down);
        app.update(Action::Down);
        assert_eq!(scroll(&app), 2);
        app.update(Action::Up);
        assert_eq!(scroll(&app), 1);
        app.update(Action::Bottom);
        assert_eq!(scroll(&app), lines - rows);
        app.update(Action::Down);
        assert_eq!(scroll(&app), lines - rows, "no scrolling past the end");
        app.update(Action::Top);
        assert_eq!(scroll(&app), 0);
        assert_eq!(app.selected(), Some(0), "the list selection is untouched");
    }

    #[test]
    fn esc_returns_to_the_list_and_stops_following() {
        let mut app = app_with(fixtures::three_flows());
        app.update(Action::Bottom);
        app.update(Action::Open);

        assert_eq!(app.update(Action::Back), Some(Request::Follow(None)));
        assert_eq!(app.view(), &View::List);
        assert_eq!(app.selected(), Some(2), "back on the same row");
        assert_eq!(app.update(Action::Back), None, "already on the list");
    }

    #[test]
    fn r_asks_for_a_refresh_and_q_quits() {
        let mut app = app_with(fixtures::three_flows());
        assert_eq!(app.update(Action::Refresh), Some(Request::RefreshNow));
        assert!(!app.should_quit());
        app.update(Action::Quit);
        assert!(app.should_quit());
    }
}
