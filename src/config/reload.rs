//! The one loop behind every "re-read this file when it changes": the role file, the serving
//! certificate. Files are polled rather than watched with inotify, because Kubernetes updates a
//! mounted Secret or ConfigMap by swapping a symlink, which inotify on the file itself misses.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

/// Polls are never more often than this, whatever the flag says.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How long a changed file must stay the same before it is believed: `echo > file` and most
/// editors truncate first and write after, and a poll between the two would read nothing.
pub const SETTLE: Duration = Duration::from_millis(50);

/// Reads `path` for a reload: the bytes once two reads `SETTLE` apart agree. Blocking; call it
/// from the poll closure.
pub fn read_settled(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    for _ in 0..10 {
        std::thread::sleep(SETTLE);
        let again = std::fs::read(path)?;
        if again == bytes {
            return Ok(bytes);
        }
        bytes = again;
    }
    Err(std::io::Error::other("the file is still being written"))
}

/// An emptied file is applied only when it is still empty at the next poll: emptying a file
/// is a way to revoke everything it grants, and must work, but a file caught empty once is
/// more often a write in progress.
#[derive(Debug, Default)]
pub struct EmptyGate(std::sync::atomic::AtomicBool);

impl EmptyGate {
    /// Whether `bytes` may be applied now.
    pub fn pass(&self, path: &std::path::Path, bytes: &[u8]) -> bool {
        use std::sync::atomic::Ordering;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            self.0.store(false, Ordering::Relaxed);
            return true;
        }
        let seen_before = self.0.swap(true, Ordering::Relaxed);
        if !seen_before {
            tracing::warn!(file = %path.display(), "the file is empty; applying that if it is still empty at the next check");
        }
        seen_before
    }
}

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

    #[test]
    fn a_file_is_read_once_it_stops_changing() {
        let dir = std::env::temp_dir().join(format!("kop-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, "").unwrap();
        // Truncated now, written a moment later: the reader waits for the final content.
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(SETTLE / 2);
                std::fs::write(&path, "clusters: []\n").unwrap();
            })
        };
        assert_eq!(read_settled(&path).unwrap(), b"clusters: []\n");
        writer.join().unwrap();
        assert!(read_settled(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_file_passes_only_when_still_empty_at_the_next_check() {
        let gate = EmptyGate::default();
        let path = std::path::Path::new("roles.yaml");
        assert!(gate.pass(path, b"kind: Role"));
        assert!(!gate.pass(path, b" \n"), "first seen empty: wait");
        assert!(gate.pass(path, b""), "still empty: apply");
        assert!(gate.pass(path, b"kind: Role"));
        assert!(!gate.pass(path, b""), "emptied again: wait again");
        assert!(
            gate.pass(path, b"kind: Role"),
            "refilled in between: the empty read is forgotten"
        );
        assert!(!gate.pass(path, b""));
    }

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
