//! What the user (or the worker) wants done, as data: terminal events are
//! mapped to an [`Action`] here, and nothing else happens here. Whether an
//! action moves a selection or scrolls a tree is `App::update`'s decision.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::worker::Fetched;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Open the selected flow.
    Open,
    /// Back to the flows list.
    Back,
    /// Fetch now rather than at the next tick.
    Refresh,
    Quit,
    Resize {
        width: u16,
        height: u16,
    },
    Fetched(Fetched),
}

/// The action a terminal event asks for, if any.
pub(crate) fn from_event(event: &Event) -> Option<Action> {
    match event {
        Event::Key(key) => from_key(key),
        Event::Resize(width, height) => Some(Action::Resize {
            width: *width,
            height: *height,
        }),
        _ => None,
    }
}

fn from_key(key: &KeyEvent) -> Option<Action> {
    // Some terminals report releases and repeats too; act on presses only.
    if key.kind != KeyEventKind::Press {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            KeyCode::Char('d') => Some(Action::PageDown),
            KeyCode::Char('u') => Some(Action::PageUp),
            _ => None,
        };
    }
    let action = match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc | KeyCode::Backspace => Action::Back,
        KeyCode::Char('r') => Action::Refresh,
        _ => return None,
    };
    Some(action)
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyEventState;

    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn keys_map_to_actions() {
        let none = KeyModifiers::NONE;
        let cases = [
            (press(KeyCode::Char('j'), none), Some(Action::Down)),
            (press(KeyCode::Up, none), Some(Action::Up)),
            (
                press(KeyCode::Char('G'), KeyModifiers::SHIFT),
                Some(Action::Bottom),
            ),
            (press(KeyCode::Char('g'), none), Some(Action::Top)),
            (press(KeyCode::Enter, none), Some(Action::Open)),
            (press(KeyCode::Backspace, none), Some(Action::Back)),
            (press(KeyCode::Esc, none), Some(Action::Back)),
            (press(KeyCode::Char('r'), none), Some(Action::Refresh)),
            (press(KeyCode::Char('q'), none), Some(Action::Quit)),
            (
                press(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Some(Action::Quit),
            ),
            (press(KeyCode::Char('c'), none), None),
            (
                Event::Resize(80, 24),
                Some(Action::Resize {
                    width: 80,
                    height: 24,
                }),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(from_event(&event), expected, "{event:?}");
        }
    }

    #[test]
    fn key_releases_are_ignored() {
        let release = Event::Key(KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        });
        assert_eq!(from_event(&release), None);
    }
}
