//! Background tasks that must not silently stop: a task that panics is logged, counted and
//! started again, so a bug in one batch cannot wedge the queue or the projector for good.

use std::{future::Future, time::Duration};

use crate::metrics as m;

/// Runs the task `start` makes until it returns; starts a new one each time one panics (after a
/// pause, so a task that panics at once does not spin).
pub fn supervise<F, Fut>(name: String, start: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Exported from the start (at 0), so an alert on restarts has a series to watch.
    metrics::counter!(m::TASK_RESTARTS_TOTAL, "task" => name.clone()).increment(0);
    tokio::spawn(async move {
        loop {
            // Aborting the supervisor (at shutdown) must end the task it runs too.
            let mut running = AbortOnDrop(tokio::spawn(start()));
            match (&mut running.0).await {
                Ok(()) => return,
                Err(error) if error.is_panic() => {
                    tracing::error!(task = %name, "background task panicked; starting it again");
                    metrics::counter!(m::TASK_RESTARTS_TOTAL, "task" => name.clone()).increment(1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => return,
            }
        }
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_is_started_again_until_it_returns() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let handle = supervise("flaky".into(), move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug in one batch");
                }
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
