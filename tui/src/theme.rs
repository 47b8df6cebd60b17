//! The TUI's colours and text styles, in one place so that a status looks
//! the same in the list, the summary and the tree. Styles only; no text.

use causeway_model::{FlowStatus, StepStatus};
use ratatui::style::{Color, Modifier, Style};

pub(crate) const GLYPH: Style = Style::new().fg(Color::DarkGray);
pub(crate) const DIM: Style = Style::new().fg(Color::DarkGray);
pub(crate) const HEADER: Style = Style::new().add_modifier(Modifier::BOLD);
pub(crate) const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);
pub(crate) const SELECTED: Style = Style::new()
    .bg(Color::DarkGray)
    .add_modifier(Modifier::BOLD);
pub(crate) const EVENT_TYPE: Style = Style::new().add_modifier(Modifier::BOLD);
pub(crate) const SERVICE: Style = Style::new().fg(Color::Cyan);
pub(crate) const ERROR: Style = Style::new().fg(Color::Red);
pub(crate) const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
pub(crate) const OK: Style = Style::new().fg(Color::Green);
pub(crate) const PENDING: Style = Style::new().fg(Color::Yellow);

pub(crate) fn flow_status(status: FlowStatus) -> Style {
    match status {
        FlowStatus::Completed => Style::new().fg(Color::Green),
        FlowStatus::Failed => Style::new().fg(Color::Red),
        FlowStatus::InProgress => Style::new().fg(Color::Yellow),
        FlowStatus::Compensated => Style::new().fg(Color::Magenta),
        FlowStatus::Stuck | FlowStatus::DeadLettered => {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        }
    }
}

pub(crate) fn step_status(status: StepStatus) -> Style {
    match status {
        StepStatus::Handled => Style::new().fg(Color::Green),
        StepStatus::Pending | StepStatus::InProgress => Style::new().fg(Color::Yellow),
        StepStatus::Failed => Style::new().fg(Color::Red),
        StepStatus::Retrying => Style::new().fg(Color::LightYellow),
        StepStatus::DeadLettered => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        StepStatus::Compensated => Style::new().fg(Color::Magenta),
    }
}
