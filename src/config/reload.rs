//! The one loop behind every "re-read this file when it changes": the role file, the serving
//! certificate. Files are polled rather than watched with inotify, because Kubernetes updates a
//! mounted Secret or ConfigMap by swapping a symlink, which inotify on the file itself misses.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

/// Polls are never more often than this, whatever the flag says.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `check` every `every` until `cancel` fires, on the blocking pool (it reads files). The
/// first run is one interval after the call: the caller has just loaded the file itself.
pub fn poll_until_cancelled<F>(every: Duration, cancel: CancellationToken, check: F)
where
    F: Fn() + Send + Sync + 'static,
{
    let check = Arc::new(check);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(MIN_INTERVAL));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let check = check.clone();
            let _ = tokio::task::spawn_blocking(move || check()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn polls_until_cancelled() {
        let count = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let seen = count.clone();
        poll_until_cancelled(Duration::ZERO, cancel.clone(), move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_millis(450)).await;
        let n = count.load(Ordering::SeqCst);
        assert!((2..=5).contains(&n), "{n} polls in 450 ms at the 100 ms floor");
        cancel.cancel();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let after = count.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count.load(Ordering::SeqCst), after, "no poll after cancel");
    }
}
