//! One shutdown signal for every daemon in the process: Ctrl-C, SIGTERM,
//! or the demo deciding it is done.

use tokio::sync::watch;

/// Fires once; every clone's [`Shutdown::wait`] then completes.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A future that completes when shutdown is triggered.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|fired| *fired).await;
        }
    }

    /// Triggers on Ctrl-C or SIGTERM.
    pub fn on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(term) => term,
                        Err(_) => {
                            let _ = ctrl_c.await;
                            this.trigger();
                            return;
                        }
                    };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            this.trigger();
        });
    }
}
