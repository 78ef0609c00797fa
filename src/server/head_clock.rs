//! The HTTP/1.1 request-header deadline (`--request-header-timeout`, slowloris), kept with one
//! timer per connection instead of one per request.
//!
//! hyper's own header timeout boxes a new timer for every request head it reads, registers it
//! with tokio's timer wheel and removes it again once the head is in: about 1.4k instructions
//! per request, 1.6% of everything the proxy does for a small GET. Here the connection keeps one
//! timer, and a request only records when the connection started waiting for a head (its
//! answer ended) and when that wait ended (a head arrived). The timer looks at those marks when
//! it fires and sleeps again until the deadline they give: it wakes at most once per timeout
//! while the connection is busy, and closes the connection when a head has been awaited for
//! the whole timeout, keep-alive idle time included, as hyper's did.

use std::{
    pin::{Pin, pin},
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// One connection's marks. Requests on an HTTP/1.1 connection are served one after another, so
/// a single word holds the state.
pub struct HeadClock {
    start: Instant,
    timeout: Duration,
    /// Milliseconds after `start`, plus one, since when the connection has waited for a request
    /// head; 0 while a request is being served.
    waiting_since: AtomicU64,
}

impl HeadClock {
    /// A new connection: waiting for its first head from now.
    pub fn new(timeout: Duration) -> Self {
        HeadClock {
            start: Instant::now(),
            timeout,
            waiting_since: AtomicU64::new(1),
        }
    }

    /// A request head has arrived: no deadline until its answer has been sent.
    pub fn head_read(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// The answer has been sent (or dropped): the next head is awaited from now.
    pub fn answered(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.waiting_since.store(ms + 1, Ordering::Relaxed);
    }

    /// When the head now awaited must have arrived; `None` while a request is being served.
    fn deadline(&self) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.start + Duration::from_millis(since - 1) + self.timeout),
        }
    }

    /// Resolves when a request head has been awaited for the whole timeout.
    pub async fn expired(&self) {
        let mut wait = pin!(tokio::time::sleep(self.timeout));
        loop {
            wait.as_mut().await;
            let now = Instant::now();
            let next = match self.deadline() {
                Some(deadline) if deadline <= now => return,
                Some(deadline) => deadline,
                // Busy: a deadline can start at the earliest when the answer ends.
                None => now + self.timeout,
            };
            wait.as_mut().reset(next);
        }
    }
}

/// A response body that tells the clock when it is done: hyper drops it once the last byte is
/// written (or the connection ends).
pub struct Answered<B> {
    body: B,
    clock: std::sync::Arc<HeadClock>,
}

impl<B> Answered<B> {
    pub fn new(body: B, clock: std::sync::Arc<HeadClock>) -> Self {
        Answered { body, clock }
    }
}

impl<B> Drop for Answered<B> {
    fn drop(&mut self) {
        self.clock.answered();
    }
}

impl<B: Body + Unpin> Body for Answered<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    // Real time (tokio's paused clock needs its test-util feature, which would reach the bench's
    // release build through feature unification): the lower bounds are exact, the upper ones
    // leave room for a busy machine.

    #[tokio::test]
    async fn a_head_awaited_for_the_whole_timeout_expires_and_a_busy_connection_never_does() {
        let timeout = Duration::from_millis(300);
        let clock = Arc::new(HeadClock::new(timeout));
        // Busy from the start for four timeouts: never expires.
        clock.head_read();
        let expired = tokio::time::timeout(timeout * 4, clock.expired()).await;
        assert!(expired.is_err(), "a connection serving a request was closed");
        // Answered: the wait runs from now, and ends one timeout later.
        clock.answered();
        let started = Instant::now();
        clock.expired().await;
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < timeout * 5, "{waited:?}");
    }

    #[tokio::test]
    async fn each_answer_restarts_the_wait() {
        let timeout = Duration::from_secs(1);
        let clock = Arc::new(HeadClock::new(timeout));
        let watcher = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.expired().await })
        };
        // A request every 200 ms, each answered at once: never a second without a head.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            clock.head_read();
            clock.answered();
        }
        let last = Instant::now();
        assert!(!watcher.is_finished(), "closed while requests kept coming");
        watcher.await.expect("the watcher ends");
        let waited = last.elapsed();
        assert!(
            waited >= timeout - Duration::from_millis(20) && waited < timeout * 3,
            "{waited:?}"
        );
    }
}
