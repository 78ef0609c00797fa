//! The HTTP/1.1 request-header deadline (`--request-header-timeout`, slowloris) and the wait for
//! the upstream's response headers (`--upstream-response-header-timeout`), kept with one timer
//! per connection instead of one or two per request.
//!
//! hyper's own header timeout boxes a new timer for every request head it reads, registers it
//! with tokio's timer wheel and removes it again once the head is in: about 1.4k instructions
//! per request, 1.6% of everything the proxy does for a small GET; a tokio timeout around the
//! upstream call costs about 1k more. Here the connection keeps one timer, and a request only
//! records when the connection started waiting for a head (its answer ended), when that wait
//! ended (a head arrived), and by when its upstream answer is due. The timer looks at those
//! marks when it fires and sleeps again until the next deadline they give:
//! - it closes the connection when a head has been awaited for the whole timeout, keep-alive
//!   idle time included, as hyper's did;
//! - it wakes the connection's task when an upstream answer is overdue: the request, polled
//!   with the connection, sees its deadline has passed and answers 504;
//! - while the connection is busy (a long HTTP/1.1 watch included) it looks once per the
//!   shorter of the two limits: an upstream deadline set since its last look is at least that
//!   far away, so the timer always looks again before it falls due, and then sleeps until it.

use std::{
    pin::{Pin, pin},
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::cluster::upstream::Watchdog;

/// One connection's marks. Requests on an HTTP/1.1 connection are served one after another, so
/// a single word holds each.
pub struct HeadClock {
    start: Instant,
    /// The request-head limit; zero for none.
    timeout: Duration,
    /// How long a busy connection's timer sleeps before it looks again: the shorter of the two
    /// limits that are set.
    busy_check: Duration,
    /// Milliseconds after `start`, plus one, since when the connection has waited for a request
    /// head; 0 while a request is being served.
    waiting_since: AtomicU64,
    /// Milliseconds after `start` (rounded up), plus one, by when the upstream's response
    /// headers are due; 0 when no request waits for them.
    upstream_due: AtomicU64,
}

impl HeadClock {
    /// A new connection, waiting for its first head from now. `upstream` is the limit on the
    /// wait for response headers (zero for none).
    pub fn new(timeout: Duration, upstream: Duration) -> Self {
        let busy_check = [timeout, upstream]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(Duration::ZERO);
        HeadClock {
            start: Instant::now(),
            timeout,
            busy_check,
            waiting_since: AtomicU64::new(1),
            upstream_due: AtomicU64::new(0),
        }
    }

    /// Whether the connection needs the timer at all (some limit is set).
    pub fn keeps_time(&self) -> bool {
        !self.busy_check.is_zero()
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

    /// When the head now awaited must have arrived; `None` while a request is being served or
    /// without a limit.
    fn deadline(&self) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Relaxed) {
            _ if self.timeout.is_zero() => None,
            0 => None,
            since => Some(self.start + Duration::from_millis(since - 1) + self.timeout),
        }
    }

    /// By when the upstream's answer is due, if a request waits for one.
    fn upstream_due(&self) -> Option<Instant> {
        match self.upstream_due.load(Ordering::Relaxed) {
            0 => None,
            due => Some(self.start + Duration::from_millis(due - 1)),
        }
    }

    /// Resolves when a request head has been awaited for the whole timeout; meanwhile wakes
    /// the connection's task by every upstream deadline. Never resolves without a head limit.
    pub async fn expired(&self) {
        if !self.keeps_time() {
            return std::future::pending().await;
        }
        let mut wait = pin!(tokio::time::sleep(self.busy_check));
        loop {
            wait.as_mut().await;
            let now = Instant::now();
            let next = match self.deadline() {
                Some(deadline) if deadline <= now => return,
                Some(deadline) => deadline,
                // Busy: a head deadline can start at the earliest when the answer ends; an
                // upstream deadline set from now on is at least `busy_check` away.
                None => match self.upstream_due() {
                    Some(due) if due > now => due.min(now + self.busy_check),
                    // Overdue: this wake lets the request see it; it clears the mark when it
                    // answers, so this only repeats if it has not yet been polled.
                    Some(_) => now + Duration::from_millis(5).min(self.busy_check),
                    None => now + self.busy_check,
                },
            };
            wait.as_mut().reset(next);
        }
    }
}

impl Watchdog for HeadClock {
    fn watch(&self, deadline: Instant) {
        let after = deadline.saturating_duration_since(self.start);
        // Rounded up: the timer must not fire before the request's own deadline.
        let ms = after.as_millis() + u128::from(!after.subsec_nanos().is_multiple_of(1_000_000));
        let ms = u64::try_from(ms).unwrap_or(u64::MAX - 1);
        self.upstream_due.store(ms + 1, Ordering::Relaxed);
    }

    fn unwatch(&self) {
        self.upstream_due.store(0, Ordering::Relaxed);
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

    use http::Response;
    use hyper::body::Incoming;
    use tower::BoxError;

    use super::*;
    use crate::cluster::upstream::{UpstreamError, within_header_timeout};

    /// An upstream that never answers, waited for under `limit` with `clock` as the watchdog,
    /// from `after` on, polled in one task with the connection's timer (started now) as the
    /// server polls them: how long the wait lasted, and how it ended. The timer must never
    /// close the busy connection.
    async fn overdue(clock: &HeadClock, limit: Duration, after: Duration) -> (Duration, UpstreamError) {
        let wait = async {
            tokio::time::sleep(after).await;
            let never = std::future::pending::<Result<Response<Incoming>, BoxError>>();
            let started = Instant::now();
            let r = within_header_timeout(limit, never, Some(clock as &dyn Watchdog)).await;
            (started.elapsed(), r.expect_err("nothing was answered"))
        };
        tokio::select! {
            biased;
            r = wait => r,
            () = clock.expired() => panic!("a busy connection was closed"),
        }
    }

    #[tokio::test]
    async fn an_overdue_upstream_answer_is_seen_without_a_timer_of_its_own() {
        let limit = Duration::from_millis(300);
        for head_timeout in [Duration::ZERO, Duration::from_secs(2)] {
            let clock = HeadClock::new(head_timeout, limit);
            clock.head_read();
            let (waited, err) = overdue(&clock, limit, Duration::ZERO).await;
            assert!(matches!(err, UpstreamError::Timeout(d) if d == limit), "{err:?}");
            assert!(
                waited >= limit && waited < limit * 3,
                "{head_timeout:?}: {waited:?}"
            );
            assert_eq!(
                clock.upstream_due(),
                None,
                "the mark is cleared when the wait ends"
            );
        }
    }

    #[tokio::test]
    async fn a_wait_that_starts_between_two_looks_is_still_cut_at_its_own_deadline() {
        let limit = Duration::from_millis(400);
        let clock = HeadClock::new(Duration::ZERO, limit);
        clock.head_read();
        // The timer looks at the start and again 400 ms later; the wait starts 50 ms in, due
        // 50 ms after that look: a timer that did not know would end it 350 ms late.
        let (waited, _) = overdue(&clock, limit, Duration::from_millis(50)).await;
        assert!(waited >= limit && waited < limit + limit / 2, "{waited:?}");
    }

    #[tokio::test]
    async fn a_wait_is_watched_only_while_it_lasts() {
        let clock = HeadClock::new(Duration::ZERO, Duration::from_secs(5));
        clock.head_read();
        // Pending once, then failed (a hyper `Incoming` body cannot be made here).
        let mut polls = 0;
        let call = std::future::poll_fn(|cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Err::<Response<Incoming>, BoxError>("reset".into()))
        });
        let limit = Duration::from_secs(5);
        let mut wait = pin!(within_header_timeout(limit, call, Some(&clock as &dyn Watchdog)));
        let first = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        let due = clock.upstream_due().expect("a waiting request is watched");
        let left = due - Instant::now();
        assert!(left > limit - Duration::from_secs(1) && left <= limit + Duration::from_millis(1));
        let ended = wait.await;
        assert!(matches!(ended, Err(UpstreamError::Failed(_))), "{ended:?}");
        assert_eq!(
            clock.upstream_due(),
            None,
            "the mark is cleared when the wait ends"
        );
        // Neither limit: the connection keeps no timer.
        assert!(!HeadClock::new(Duration::ZERO, Duration::ZERO).keeps_time());
    }

    #[tokio::test]
    async fn a_head_awaited_for_the_whole_timeout_expires_and_a_busy_connection_never_does() {
        let timeout = Duration::from_millis(300);
        let clock = Arc::new(HeadClock::new(timeout, Duration::ZERO));
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
        let clock = Arc::new(HeadClock::new(timeout, Duration::ZERO));
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
