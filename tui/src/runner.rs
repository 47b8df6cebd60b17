//! The entry point, [`run`]: checks the settings, starts the fetch worker, takes
//! over the terminal and runs the event loop until the user quits. The loop
//! only moves messages: terminal events and worker results become actions
//! for `App::update`, its requests go to the worker, and every turn redraws.
//! No state decisions are made here.

use std::time::Duration;

use crossterm::event;

use crate::action::{self, Action};
use crate::app::App;
use crate::config::TuiConfig;
use crate::error::TuiError;
use crate::terminal::{self, Term};
use crate::ui;
use crate::worker::Worker;

/// How long to wait for a key before looking for worker results again.
const POLL: Duration = Duration::from_millis(100);

/// Runs the terminal UI against the query API at `config.query_url` (for
/// example `http://127.0.0.1:8686`) until the user quits with `q` or Ctrl-C.
///
/// The terminal is put in raw mode on the alternate screen and restored on
/// return and on panic. An unreachable query API is not an error: it is
/// shown in the status line and retried every refresh interval.
pub fn run(config: &TuiConfig) -> Result<(), TuiError> {
    let endpoints = config.endpoints()?;
    let worker = Worker::spawn(endpoints, config.refresh_interval())?;
    let mut terminal = terminal::enter()?;
    let app = App::new(&config.query_url, config.refresh_interval());
    let result = event_loop(&mut terminal, &worker, app);
    let restored = terminal::restore().map_err(|source| TuiError::Terminal {
        action: "restore the terminal",
        source,
    });
    result.and(restored)
}

fn event_loop(terminal: &mut Term, worker: &Worker, mut app: App) -> Result<(), TuiError> {
    let failed = |action: &'static str| move |source| TuiError::Terminal { action, source };
    let size = terminal.size().map_err(failed("read the terminal size"))?;
    dispatch(
        &mut app,
        worker,
        Action::Resize {
            width: size.width,
            height: size.height,
        },
    )?;
    loop {
        terminal
            .draw(|frame| ui::draw(frame, &app))
            .map_err(failed("draw"))?;
        if event::poll(POLL).map_err(failed("poll for input"))? {
            let event = event::read().map_err(failed("read input"))?;
            if let Some(action) = action::from_event(&event) {
                dispatch(&mut app, worker, action)?;
            }
        }
        while let Some(fetched) = worker.try_recv()? {
            dispatch(&mut app, worker, Action::Fetched(fetched))?;
        }
        if app.should_quit() {
            return Ok(());
        }
    }
}

fn dispatch(app: &mut App, worker: &Worker, action: Action) -> Result<(), TuiError> {
    match app.update(action) {
        Some(request) => worker.send(request),
        None => Ok(()),
    }
}
