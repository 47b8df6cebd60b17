//! How the screen is split: the flows table or the flow's summary and tree,
//! above a footer. Both `ui` (which paints into these areas) and `App`
//! (which pages and scrolls by how many rows fit) read it, so neither needs
//! the other's internals. Pure geometry: it paints nothing and knows no
//! state.

use ratatui::layout::{Constraint, Layout, Rect};

const FOOTER_HEIGHT: u16 = 2;
const SUMMARY_HEIGHT: u16 = 4;

/// The flows table and the footer.
pub(crate) fn list_layout(area: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Fill(1), Constraint::Length(FOOTER_HEIGHT)]).areas(area)
}

/// One flow's summary, its tree and the footer.
pub(crate) fn detail_layout(area: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(SUMMARY_HEIGHT),
        Constraint::Fill(1),
        Constraint::Length(FOOTER_HEIGHT),
    ])
    .areas(area)
}

/// How many flows fit on screen (the table's borders and header aside).
pub(crate) fn list_rows(area: Rect) -> usize {
    usize::from(list_layout(area)[0].height.saturating_sub(3))
}

/// How many tree lines fit on screen (the block's borders aside).
pub(crate) fn tree_rows(area: Rect) -> usize {
    usize::from(detail_layout(area)[1].height.saturating_sub(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_leave_room_for_borders_header_summary_and_footer() {
        let area = Rect::new(0, 0, 120, 30);
        // 30 - footer 2 = 28 for the table, minus 2 borders and 1 header.
        assert_eq!(list_rows(area), 25);
        // 30 - summary 4 - footer 2 = 24 for the tree, minus 2 borders.
        assert_eq!(tree_rows(area), 22);
        assert_eq!(list_rows(Rect::new(0, 0, 10, 2)), 0);
    }
}
