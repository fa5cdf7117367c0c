//! Graceful shutdown: stop accepting, tell every task, wait for them, up to a deadline.
//!
//! One [`Shutdown`] per process holds a `CancellationToken` (the broadcast every connection
//! task listens to) and a `TaskTracker` (so we know when they have all finished). The accept
//! loop awaits [`shutdown_signal`] or the token, then calls [`Shutdown::drain`].

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The process-wide cancellation token and the tasks that must end before exit.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// The token every task watches; cancelled when shutdown begins.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns a task that shutdown waits for.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// The tracker, for callers that spawn through it themselves.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Starts shutdown: every task watching the token is told to finish.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown has been triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Triggers shutdown and waits up to `deadline` for every tracked task to end.
    /// Returns false when some task was still running at the deadline.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.trigger();
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if finished {
            tracing::info!("shutdown complete");
        } else {
            tracing::warn!(
                "{} tasks still running after {deadline:?}; exiting anyway",
                self.tracker.len()
            );
        }
        finished
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => tracing::info!("interrupted; shutting down"),
                    _ = term.recv() => tracing::info!("terminated; shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                let _ = ctrl_c.await;
                tracing::info!("interrupted; shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        tracing::info!("interrupted; shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tasks_that_watch_the_token() {
        let shutdown = Shutdown::new();
        let token = shutdown.token();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        shutdown.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(shutdown.drain(Duration::from_secs(5)).await);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn drain_gives_up_at_the_deadline() {
        let shutdown = Shutdown::new();
        shutdown.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await });
        assert!(!shutdown.drain(Duration::from_millis(50)).await);
    }
}
