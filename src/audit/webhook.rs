//! The audit webhook: one JSON event per audited request, posted to
//! `<--audit-webhook-server>/api/v1/k8s-audit-log/webhook` by a background sender.
//!
//! Unlike the Go proxy, which posted synchronously before forwarding, a request here only puts
//! its event on a bounded queue and never waits: the sender retries with backoff, times out each
//! attempt, counts what it had to drop, and flushes the queue on graceful shutdown.
//!
//! With `--audit-webhook-batch-max N` (N > 1) a POST carries a JSON array of up to N events
//! instead of one object: the receiver must expect that format, so it is opt-in.

mod client;
mod event;
mod sender;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, time::Duration};

pub use event::{
    AuditDecision, AuditEvent, AuditEventView, OMITTED_CREDENTIALS, OMITTED_NOT_JSON, OMITTED_TOO_LARGE,
    carries_credentials, is_json_content_type, omitted_body, precheck_body, request_body_field,
    timestamp_now,
};
pub use sender::{
    AuditHandle, AuditSender, AuditStats, MAX_BATCH, MAX_BATCH_WAIT, MAX_IN_FLIGHT, MAX_IN_FLIGHT_BATCHED,
};

/// Appended to the configured base URL, as the Go proxy did.
pub const WEBHOOK_PATH: &str = "/api/v1/k8s-audit-log/webhook";

/// Settings for the sender, from the `--audit-webhook-*` flags.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Base URL; events go to `<url>/api/v1/k8s-audit-log/webhook`. `http` is allowed (tests,
    /// sidecars) with a warning at start.
    pub url: String,
    /// PEM bundle to trust for an `https` webhook; the system roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and key, for webhooks that want mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// File holding a bearer token; re-read at most once a minute so rotation works.
    pub bearer_token_file: Option<PathBuf>,
    /// Events the queue holds; further events are dropped (and counted) while it is full.
    pub queue_size: usize,
    /// Time allowed for one attempt, connection included.
    pub timeout: Duration,
    /// Attempts after the first one when the webhook answers 500, 501 or 505+. While it is
    /// unavailable (no connection, no answer, 502, 503, 504, 429) an event is retried until it
    /// goes through or the proxy shuts down.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further retry, capped at 30 s.
    pub initial_backoff: Duration,
    /// Events per POST. 1 (the default) posts each event as one JSON object, as the Go proxy
    /// did. Above 1, every POST carries a JSON array of 1 to `batch_max` events: whatever is
    /// queued when a delivery slot frees up, so a batch never waits for more events to arrive.
    pub batch_max: usize,
    /// With `batch_max` above 1: how long a batch that is not full may wait for more events
    /// before it is posted (kube-apiserver's `--audit-webhook-batch-max-wait`). Zero (the
    /// default): a batch is what is queued and never waits. Each POST costs the proxy about as
    /// much as the request it records, so a short wait cuts its audit cost under steady load.
    pub batch_wait: Duration,
}

impl WebhookConfig {
    /// A config for `url` with the defaults: 4096 queued events, 10 s per attempt, 5 retries of
    /// an error answer starting at 200 ms (about 6 s of backoff in all); retries of an
    /// unavailable webhook at most 5 s apart, without limit.
    ///
    /// The queue holds whole events, bodies included: its worst-case memory is about
    /// `queue_size` times (the request body limit + 1 KiB).
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            bearer_token_file: None,
            queue_size: 4096,
            timeout: Duration::from_secs(10),
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            batch_max: 1,
            batch_wait: Duration::ZERO,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit webhook URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("reading {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit webhook bearer token file {0}: {1}")]
    Token(PathBuf, &'static str),
    #[error("audit webhook TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("audit webhook: {0}")]
    Config(String),
}
