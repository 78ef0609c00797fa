//! The bounded queue and the background task that empties it.
//!
//! Every event the queue accepted ends up counted exactly once as `sent`, `failed` (the webhook
//! refused it, or retries ran out) or `dropped` (left behind by a shutdown deadline); an event
//! the queue refused is `dropped` straight away. In batched mode the events of one POST share
//! its fate: each is counted once, all the same way.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{
    sync::{
        Notify,
        mpsc::{self, error::TrySendError},
    },
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use super::{
    AuditError, AuditEventView, WebhookConfig,
    client::{Outcome, WebhookClient},
};

/// Posts of one event each under way at once. The Go proxy posted every event from its request,
/// as many at once as requests; 4 (this proxy's first choice) dropped three events in four at
/// 15,000 requests a second on 2 saturated cores (bench/run, "Audit webhook on"), because each
/// POST waits its turn on the busy machine; 32 drop under one in ten there (batched mode drops
/// none). A slow webhook still sees at most 32 connections while the queue fills.
pub const MAX_IN_FLIGHT: usize = 32;
/// Posts under way at once in batched mode: each carries up to `--audit-webhook-batch-max`
/// events, so a few keep up with any load.
pub const MAX_IN_FLIGHT_BATCHED: usize = 4;
/// Longest `--audit-webhook-batch-max-wait`: events are evidence, and one held longer is one a
/// crash could lose.
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(10);

/// Largest `--audit-webhook-batch-max`: with 16 KiB request bodies, about 17 MiB per POST.
pub const MAX_BATCH: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// While the webhook is unavailable, each delivery slot tries again at least this often, so
/// events flow again within seconds of its return (at most one attempt per slot per period).
const UNAVAILABLE_MAX_BACKOFF: Duration = Duration::from_secs(5);
const TOKEN_REFRESH: Duration = Duration::from_secs(60);
/// At most one warning per interval about drops and give-ups; the counters carry the rest.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// After the shutdown deadline, how long to wait for the sender to abandon what it holds.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Events waiting in the queue.
    pub queued: AtomicI64,
    /// Delivered (2xx).
    pub sent: AtomicU64,
    /// Retry attempts (an event retried twice counts 2).
    pub retried: AtomicU64,
    /// Given up on: refused with a 4xx other than 429, or still failing after the last retry.
    pub failed: AtomicU64,
    /// Refused because the queue was full or closed, or abandoned at the shutdown deadline.
    pub dropped: AtomicU64,
}

impl crate::metrics::AuditCounters for AuditStats {
    fn audit_figures(&self) -> crate::metrics::AuditFigures {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::metrics::AuditFigures {
            queued: self.queued.load(Ordering::Relaxed),
            sent: read(&self.sent),
            retried: read(&self.retried),
            dropped: read(&self.dropped),
            failed: read(&self.failed),
        }
    }
}

/// Starts the sender.
pub struct AuditSender;

impl AuditSender {
    /// Checks the config, reads the TLS files and the token, and spawns the sender task on the
    /// current tokio runtime. The `JoinHandle` ends after [`AuditHandle::shutdown`], or once
    /// every handle is dropped and the queue is empty.
    pub fn start(
        cfg: WebhookConfig,
        stats: Arc<AuditStats>,
    ) -> Result<(AuditHandle, JoinHandle<()>), AuditError> {
        Self::start_with_token_refresh(cfg, stats, TOKEN_REFRESH)
    }

    pub(super) fn start_with_token_refresh(
        cfg: WebhookConfig,
        stats: Arc<AuditStats>,
        token_refresh: Duration,
    ) -> Result<(AuditHandle, JoinHandle<()>), AuditError> {
        if cfg.queue_size == 0 {
            return Err(AuditError::Config("the queue size must be at least 1".into()));
        }
        if cfg.batch_max == 0 || cfg.batch_max > MAX_BATCH {
            return Err(AuditError::Config(format!(
                "the batch size must be between 1 and {MAX_BATCH}"
            )));
        }
        if !cfg.batch_wait.is_zero() && cfg.batch_max == 1 {
            return Err(AuditError::Config(
                "a batch wait needs a batch size above 1 (--audit-webhook-batch-max)".into(),
            ));
        }
        if cfg.batch_wait > MAX_BATCH_WAIT {
            return Err(AuditError::Config(format!(
                "the batch wait must be at most {}s",
                MAX_BATCH_WAIT.as_secs()
            )));
        }
        if cfg.timeout.is_zero() {
            return Err(AuditError::Config("the timeout must be positive".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AuditError::Config("the sender must be started inside a tokio runtime".into()))?;
        let client = WebhookClient::new(&cfg, token_refresh)?;
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let shared = Arc::new(Shared {
            stats,
            pending: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            closing: CancellationToken::new(),
            abort: CancellationToken::new(),
            finished: CancellationToken::new(),
            drop_warn: RateLimit::new(WARN_INTERVAL),
            fail_warn: RateLimit::new(WARN_INTERVAL),
            full_at: if cfg.batch_wait.is_zero() {
                0
            } else {
                cfg.batch_max
            },
            unbatched: AtomicUsize::new(0),
            full: Notify::new(),
        });
        let policy = Arc::new(Policy {
            client,
            timeout: cfg.timeout,
            max_retries: cfg.max_retries,
            initial_backoff: cfg.initial_backoff,
            batched: cfg.batch_max > 1,
            batch_max: cfg.batch_max,
            batch_wait: cfg.batch_wait,
            in_flight: if cfg.batch_max > 1 {
                MAX_IN_FLIGHT_BATCHED
            } else {
                MAX_IN_FLIGHT
            },
        });
        let task = runtime.spawn(run(rx, policy, shared.clone()));
        Ok((AuditHandle { tx, shared }, task))
    }
}

/// The request side: cheap to clone, and [`AuditHandle::send`] never waits.
#[derive(Clone)]
pub struct AuditHandle {
    /// Events serialised at request time: one JSON object each.
    tx: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
}

impl AuditHandle {
    /// Queues `ev` for delivery. Never blocks: when the queue is full (the webhook is slow or
    /// down) or closed, the event is counted as dropped and a warning is logged at most every
    /// ten seconds. (The proxy queues [`AuditEventView`]s with `send_view`; tests send owned
    /// events.)
    #[cfg(test)]
    pub fn send(&self, ev: super::AuditEvent) {
        // An owned event of strings always serialises.
        self.send_json(Bytes::from(serde_json::to_vec(&ev).expect("event serialises")));
    }

    /// Queues the event `view` shows, serialised now (the request path's form: nothing is
    /// copied into an owned event first).
    pub fn send_view(&self, view: &AuditEventView<'_>) {
        let mut json = Vec::with_capacity(1024);
        view.write_json(&mut json);
        self.send_json(Bytes::from(json));
    }

    fn send_json(&self, ev: Bytes) {
        let stats = &self.shared.stats;
        // Counted before the event becomes visible to the sender, so the gauge never dips below 0.
        stats.queued.fetch_add(1, Ordering::Relaxed);
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        let full_at = self.shared.full_at;
        if full_at > 0 && self.shared.unbatched.fetch_add(1, Ordering::Relaxed) + 1 == full_at {
            // Ahead of the send, so the sender never takes the event before it is counted; a
            // refused send below leaves at worst one early wakeup.
            self.shared.full.notify_one();
        }
        if let Err(e) = self.tx.try_send(ev) {
            if full_at > 0 {
                self.shared.unbatched.fetch_sub(1, Ordering::Relaxed);
            }
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.shared.drop_warn.allow() {
                let why = match e {
                    TrySendError::Full(_) => "the queue is full",
                    TrySendError::Closed(_) => "the sender has shut down",
                };
                tracing::warn!(dropped_total = dropped, "audit event dropped: {why}");
            }
        }
    }

    pub fn stats(&self) -> &Arc<AuditStats> {
        &self.shared.stats
    }

    /// Stops accepting events and waits up to `deadline` for everything queued or in flight to
    /// be delivered (or given up on). Returns how many events were left unsent; those are also
    /// counted as dropped. Other clones of the handle can still call `send`, which then drops.
    pub async fn shutdown(self, deadline: Duration) -> u64 {
        let shared = self.shared.clone();
        drop(self);
        shared.closing.cancel();
        if tokio::time::timeout(deadline, shared.finished.cancelled())
            .await
            .is_err()
        {
            shared.abort.cancel();
            if tokio::time::timeout(ABORT_GRACE, shared.finished.cancelled())
                .await
                .is_err()
            {
                // The task is stuck somewhere it cannot be aborted; report what is still owed.
                return shared.pending.load(Ordering::Relaxed);
            }
        }
        let left = shared.abandoned.load(Ordering::Relaxed);
        if left > 0 {
            tracing::warn!(left, "audit sender shut down with events undelivered");
        }
        left
    }
}

struct Shared {
    stats: Arc<AuditStats>,
    /// Accepted and not yet settled: in the queue or being posted.
    pending: AtomicU64,
    /// Settled as dropped at shutdown.
    abandoned: AtomicU64,
    /// Set by `shutdown`: close the queue, deliver what it holds, stop.
    closing: CancellationToken,
    /// Set when the shutdown deadline passes: abandon everything now.
    abort: CancellationToken,
    /// Set by the task when it ends, however it ends.
    finished: CancellationToken,
    drop_warn: RateLimit,
    fail_warn: RateLimit,
    /// With a batch wait: the batch size, at which `full` wakes the waiting sender; else 0.
    full_at: usize,
    /// With a batch wait: events queued and not yet in a POST (in the channel or in the batch
    /// being gathered).
    unbatched: AtomicUsize,
    /// Notified when `unbatched` reaches `full_at`: the sender waits on this and the clock, not
    /// on every event (one wakeup per batch instead of one per event).
    full: Notify,
}

impl Shared {
    fn settle(&self, counter: &AtomicU64, events: u64) {
        counter.fetch_add(events, Ordering::Relaxed);
        self.pending.fetch_sub(events, Ordering::Relaxed);
    }

    fn abandon(&self, events: u64) {
        self.abandoned.fetch_add(events, Ordering::Relaxed);
        self.settle(&self.stats.dropped, events);
    }
}

struct Policy {
    client: WebhookClient,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    /// POST a JSON array (`--audit-webhook-batch-max` above 1) rather than one object.
    batched: bool,
    batch_max: usize,
    batch_wait: Duration,
    in_flight: usize,
}

/// Statuses that say the webhook is not there right now rather than that it refuses the event.
fn unavailable(status: http::StatusCode) -> bool {
    use http::StatusCode as S;
    matches!(
        status,
        S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT | S::TOO_MANY_REQUESTS
    )
}

/// Wait before retry number `retry` (1-based): the initial backoff doubled per retry, capped;
/// a `Retry-After` from the webhook can lengthen it up to the cap.
fn backoff(initial: Duration, retry: u32, retry_after: Option<Duration>) -> Duration {
    let cap = MAX_BACKOFF.max(initial);
    let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
    let exp = initial.saturating_mul(factor).min(cap);
    retry_after.map_or(exp, |ra| ra.clamp(exp, cap))
}

async fn run(mut rx: mpsc::Receiver<Bytes>, policy: Arc<Policy>, shared: Arc<Shared>) {
    let _finished = shared.finished.clone().drop_guard();
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            _ = shared.abort.cancelled() => break,
            _ = shared.closing.cancelled(), if !closing => {
                closing = true;
                // Later sends fail at once; what is already queued is still received below.
                rx.close();
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => log_panic(done),
            ev = rx.recv(), if inflight.len() < policy.in_flight => match ev {
                Some(ev) => {
                    // A batch is what is already queued, and what arrives within the batch wait.
                    let mut events = Vec::with_capacity(if policy.batched { 8 } else { 1 });
                    events.push(ev);
                    take_queued(&mut rx, &mut events, policy.batch_max);
                    if events.len() < policy.batch_max && !policy.batch_wait.is_zero() && !closing {
                        // Woken when the batch is full or the wait is over, not by each event.
                        let wait = tokio::time::sleep(policy.batch_wait);
                        tokio::pin!(wait);
                        while events.len() < policy.batch_max {
                            tokio::select! {
                                biased;
                                // Shutdown does not wait: what is in hand is delivered (or, on
                                // abort, settled as dropped) by the loop above.
                                _ = shared.abort.cancelled() => break,
                                _ = shared.closing.cancelled() => break,
                                _ = &mut wait => {
                                    take_queued(&mut rx, &mut events, policy.batch_max);
                                    break;
                                }
                                _ = shared.full.notified() => {
                                    take_queued(&mut rx, &mut events, policy.batch_max);
                                }
                            }
                        }
                    }
                    let n = events.len() as u64;
                    shared.stats.queued.fetch_sub(n as i64, Ordering::Relaxed);
                    if shared.full_at > 0 {
                        shared.unbatched.fetch_sub(events.len(), Ordering::Relaxed);
                    }
                    let guard = Settle { shared: shared.clone(), events: n, settled: false };
                    inflight.spawn(deliver(events, policy.clone(), guard));
                }
                // Closed and drained, or every handle dropped: finish what is in flight.
                None => {
                    loop {
                        tokio::select! {
                            biased;
                            _ = shared.abort.cancelled() => break,
                            done = inflight.join_next() => match done {
                                Some(done) => log_panic(done),
                                None => return,
                            },
                        }
                    }
                    break;
                }
            },
        }
    }
    // Aborted at the shutdown deadline.
    rx.close();
    while let Ok(_ev) = rx.try_recv() {
        shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
        shared.abandon(1);
    }
    // Each aborted delivery settles itself as dropped when its future is dropped.
    inflight.abort_all();
    while inflight.join_next().await.is_some() {}
}

/// Moves what is queued into `events`, up to `max` in all.
fn take_queued(rx: &mut mpsc::Receiver<Bytes>, events: &mut Vec<Bytes>, max: usize) {
    while events.len() < max {
        match rx.try_recv() {
            Ok(ev) => events.push(ev),
            Err(_) => break,
        }
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("audit delivery task panicked");
    }
}

/// Settles the events of one POST exactly once: as sent or failed by `deliver`, or as dropped if
/// the delivery future is dropped first (abort at the shutdown deadline).
struct Settle {
    shared: Arc<Shared>,
    events: u64,
    settled: bool,
}

impl Settle {
    fn sent(mut self) {
        self.settled = true;
        self.shared.settle(&self.shared.stats.sent, self.events);
    }

    fn failed(mut self, why: std::fmt::Arguments<'_>) {
        self.settled = true;
        let failed = self.shared.stats.failed.fetch_add(self.events, Ordering::Relaxed) + self.events;
        self.shared.pending.fetch_sub(self.events, Ordering::Relaxed);
        if self.shared.fail_warn.allow() {
            tracing::warn!(failed_total = failed, "audit event not delivered: {why}");
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.abandon(self.events);
        }
    }
}

/// The body of one POST: the event as an object, or in batched mode the events as an array
/// (each event is one serialised JSON object already).
fn serialize(events: &[Bytes], batched: bool) -> Bytes {
    match events {
        [ev] if !batched => ev.clone(),
        _ => {
            let len = events.iter().map(Bytes::len).sum::<usize>() + events.len() + 1;
            let mut out = Vec::with_capacity(len);
            out.push(b'[');
            for (i, ev) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(ev);
            }
            out.push(b']');
            Bytes::from(out)
        }
    }
}

async fn deliver(events: Vec<Bytes>, policy: Arc<Policy>, settle: Settle) {
    let body = serialize(&events, policy.batched);
    drop(events);
    // Two kinds of failure. The webhook is *unavailable* (no connection, no answer in time, or
    // 502, 503, 504, 429: what a load balancer or an overloaded sink says): the event waits
    // for it, however long, so an outage loses nothing the queue can hold; meanwhile the queue
    // fills and what does not fit is dropped and counted. The webhook *answered with an error*
    // for this event (500, 501, 505...): retried `max_retries` times, so a poisonous event
    // cannot hold a delivery slot forever. Any other 4xx refuses the event at once.
    // "Unavailable" is the webhook's state, not the event's: once other events have gone
    // through since this one was first tried, its failures count against `max_retries` too
    // (an event the webhook always times out on, or a sink that crashes on it behind a load
    // balancer answering 502, must not hold a delivery slot forever).
    let sent_before = settle.shared.stats.sent.load(Ordering::Relaxed);
    let (mut retry, mut errors) = (0u32, 0u32);
    loop {
        let (why, retry_after, unavailable) =
            match tokio::time::timeout(policy.timeout, policy.client.post(body.clone())).await {
                Ok(Outcome::Status { status, .. }) if status.is_success() => return settle.sent(),
                Ok(Outcome::Status { status, retry_after }) if unavailable(status) => {
                    (format!("webhook answered {status}"), retry_after, true)
                }
                Ok(Outcome::Status { status, retry_after }) if status.is_server_error() => {
                    (format!("webhook answered {status}"), retry_after, false)
                }
                Ok(Outcome::Status { status, .. }) => {
                    return settle.failed(format_args!("webhook refused it with {status}"));
                }
                Ok(Outcome::Transport(e)) => (e, None, true),
                Err(_) => (format!("no answer within {:?}", policy.timeout), None, true),
            };
        let unavailable = unavailable && settle.shared.stats.sent.load(Ordering::Relaxed) == sent_before;
        if !unavailable {
            if errors >= policy.max_retries {
                return settle.failed(format_args!("{why}; gave up after {} attempts", retry + 1));
            }
            errors += 1;
        }
        retry = retry.saturating_add(1);
        // While unavailable, our own backoff stops growing at 5 s; a Retry-After still counts.
        let wait = if unavailable {
            let exp = backoff(policy.initial_backoff, retry, None)
                .min(UNAVAILABLE_MAX_BACKOFF.max(policy.initial_backoff));
            retry_after.map_or(exp, |ra| ra.clamp(exp, MAX_BACKOFF.max(exp)))
        } else {
            backoff(policy.initial_backoff, retry, retry_after)
        };
        if unavailable && settle.shared.fail_warn.allow() {
            tracing::warn!(
                "audit webhook unavailable ({why}); events wait in the queue and are sent when it is back"
            );
        } else {
            tracing::debug!(retry, ?wait, "audit webhook attempt failed, retrying: {why}");
        }
        settle.shared.stats.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
    }
}

/// Lets one caller through per interval, without a lock.
struct RateLimit {
    epoch: Instant,
    interval_ms: u64,
    /// Milliseconds since `epoch` of the last allowed call, plus one (0 = never).
    last: AtomicU64,
}

impl RateLimit {
    fn new(interval: Duration) -> Self {
        RateLimit {
            epoch: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last: AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rate_limit_allows_one_per_interval() {
        let rl = RateLimit::new(Duration::from_secs(60));
        assert!(rl.allow());
        assert!(!rl.allow());
        assert!(!rl.allow());
        let rl = RateLimit::new(Duration::ZERO);
        assert!(rl.allow());
        assert!(rl.allow());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(100), 1, None), ms(100));
        assert_eq!(backoff(ms(100), 2, None), ms(200));
        assert_eq!(backoff(ms(100), 4, None), ms(800));
        assert_eq!(backoff(ms(100), 20, None), MAX_BACKOFF);
        assert_eq!(backoff(ms(100), u32::MAX, None), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(60), 3, None), Duration::from_secs(60));
        assert_eq!(
            backoff(ms(100), 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff(ms(100), 1, Some(Duration::from_secs(3600))), MAX_BACKOFF);
        assert_eq!(backoff(ms(100), 3, Some(Duration::ZERO)), ms(400));
    }
}
