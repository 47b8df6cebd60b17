//! Putting the terminal into the TUI's mode and always getting it back: raw
//! mode and the alternate screen on entry, the reverse on exit and from a
//! panic hook, so that a panic message prints on a sane terminal. It draws
//! nothing; that is `ui`'s business.

use std::io::{self, Stdout, stdout};
use std::panic;
use std::sync::Once;

use crossterm::cursor::Show;
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::error::TuiError;

pub(crate) type Term = Terminal<CrosstermBackend<Stdout>>;

/// Raw mode, alternate screen, panic hook; undone by [`restore`].
pub(crate) fn enter() -> Result<Term, TuiError> {
    install_panic_hook();
    enable_raw_mode().map_err(|source| TuiError::Terminal {
        action: "enable raw mode",
        source,
    })?;
    let entered = execute!(stdout(), EnterAlternateScreen)
        .and_then(|()| Terminal::new(CrosstermBackend::new(stdout())));
    entered.map_err(|source| {
        // Best effort: the error being returned matters more than this one.
        let _ = restore();
        TuiError::Terminal {
            action: "enter the alternate screen",
            source,
        }
    })
}

/// Leaves the alternate screen and raw mode and shows the cursor again.
/// Harmless when the terminal is already restored.
pub(crate) fn restore() -> io::Result<()> {
    let raw = disable_raw_mode();
    execute!(stdout(), LeaveAlternateScreen, Show)?;
    raw
}

/// Chains a hook that restores the terminal before the previous hook prints
/// the panic, once per process however often the TUI is started.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}
