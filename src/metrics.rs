//! Prometheus metrics for `GET /metrics` on the probe port, in the OpenMetrics text format.
//!
//! Every label has a closed set of values: verbs outside the Kubernetes verbs become `other`,
//! status codes become their class, and the cluster label only ever carries a cluster the proxy
//! routed to (or `unknown`). User names and paths never become labels.
//!
//! Counters that already live in atomics elsewhere (the token cache and JWKS fetches in
//! [`AuthnStats`], the audit sender in [`AuditStats`]) and the per-cluster RBAC figures are read
//! at scrape time from [`Sources`] instead of being counted twice.

mod labels;

use std::time::Duration;

use prometheus_client::{
    encoding::text,
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};

pub use labels::{ClusterLabel, Decision, RbacKind, Verb};

use labels::{
    ClusterLabels, CodeClass, DurationLabels, IssuerLabels, ObjectLabels, Phase, RequestLabels, SourceLabels,
};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The cluster label for requests that were never routed to a known cluster.
pub const UNKNOWN_CLUSTER: &str = "unknown";

/// Request duration buckets, 0.5 ms to 60 s: cached GETs land in the first few, slow lists and
/// short-lived watches in the last; longer streams count in `+Inf`.
const DURATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// One cluster's RBAC figures, filled by the caller at scrape time.
#[derive(Debug, Clone)]
pub struct RbacSource {
    pub cluster: String,
    /// Where the cluster comes from: `file` or `secret`.
    pub source: &'static str,
    /// Whether its first RBAC snapshot is in place and its watches have no error.
    pub synced: bool,
    /// Time since the snapshot in use was built; `None` before the first one.
    pub snapshot_age: Option<Duration>,
    pub objects: Vec<(RbacKind, u64)>,
    /// Roles of the cluster named like roles the proxy defines (the proxy's bindings ignore them).
    pub collisions: u64,
}

/// Authentication's counters at scrape time.
#[derive(Debug, Clone, Default)]
pub struct AuthnFigures {
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Totals over every issuer.
    pub key_fetches: u64,
    pub key_fetch_failures: u64,
    pub issuers: Vec<IssuerFigures>,
}

/// One issuer's figures at scrape time.
#[derive(Debug, Clone, Default)]
pub struct IssuerFigures {
    pub issuer: String,
    pub ready: bool,
    pub key_fetches: u64,
    pub key_fetch_failures: u64,
    /// Tokens this issuer verified and mapped, and tokens it refused (cache hits not counted).
    pub accepted: u64,
    pub refused: u64,
}

/// The audit sender's counters at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFigures {
    pub queued: i64,
    pub sent: u64,
    pub retried: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// Implemented where the authentication counters live, so metrics stays a leaf.
pub trait AuthnCounters {
    fn authn_figures(&self) -> AuthnFigures;
}

/// Implemented where the audit counters live, so metrics stays a leaf.
pub trait AuditCounters {
    fn audit_figures(&self) -> AuditFigures;
}

/// Values owned elsewhere, read when `/metrics` is scraped. A missing source reports zeros, so
/// every series exists from the first scrape on.
#[derive(Default)]
pub struct Sources<'a> {
    pub authn: Option<&'a dyn AuthnCounters>,
    pub audit: Option<&'a dyn AuditCounters>,
    pub rbac: Vec<RbacSource>,
    /// Cluster names (and sources) whose last build from their kubeconfig failed.
    pub failing: Vec<(String, &'static str)>,
}

/// Decrements its gauge when dropped, however the request or stream ends.
#[must_use = "the gauge goes back down when the guard is dropped"]
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn request_labels(
    cluster: &ClusterLabel,
    (verb, code_class, decision): (Verb, CodeClass, Decision),
) -> RequestLabels {
    RequestLabels {
        cluster: cluster.clone(),
        verb,
        code_class,
        decision,
    }
}

/// The proxy's own metrics. Shared by reference (`Arc<Metrics>`); recording takes `&self`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    inflight: Gauge,
    watches: Gauge,
    upgraded: Gauge,
    unknown_cluster: ClusterLabel,
    /// Tells this instance's handles apart in [`HANDLES`] (tests run several proxies at once).
    id: u64,
}

/// The request metrics' handles each worker thread used last, by metrics instance and cluster:
/// recording a request then costs a few pointer comparisons instead of three family lookups
/// (a read lock and a SipHash of the labels each). A handle shares its series with the family,
/// which never removes one, so a cached handle always counts into what `/metrics` shows.
struct ClusterHandles {
    metrics: u64,
    cluster: ClusterLabel,
    first_byte: Histogram,
    total: Histogram,
    /// By (verb, code class, decision): a cluster sees a handful of combinations.
    requests: Vec<((Verb, CodeClass, Decision), Counter)>,
}

/// Clusters a thread keeps handles for; beyond this it starts over.
const CACHED_CLUSTERS: usize = 32;

thread_local! {
    static HANDLES: std::cell::RefCell<Vec<ClusterHandles>> = const { std::cell::RefCell::new(Vec::new()) };
}

static NEXT_METRICS_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<DurationLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let (inflight, watches, upgraded) = (Gauge::default(), Gauge::default(), Gauge::default());
        let mut registry = Registry::default();
        registry.register(
            "kop_requests",
            "Requests by cluster, Kubernetes verb, status code class and proxy decision",
            requests.clone(),
        );
        registry.register_with_unit(
            "kop_request_duration",
            "Request duration: to the first response byte, and until the response ended",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "kop_inflight_requests",
            "Requests being handled",
            inflight.clone(),
        );
        registry.register("kop_open_watches", "Watch requests streaming", watches.clone());
        registry.register(
            "kop_open_upgraded_streams",
            "Upgraded connections (exec, attach, port-forward) open",
            upgraded.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            inflight,
            watches,
            upgraded,
            unknown_cluster: ClusterLabel::from(UNKNOWN_CLUSTER),
            id: NEXT_METRICS_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Records a finished request. `cluster` is the cluster the request was routed to, `None`
    /// for [`UNKNOWN_CLUSTER`]; `code` is the status the client got (101 for upgrades).
    pub fn request_done(
        &self,
        cluster: Option<&ClusterLabel>,
        verb: Verb,
        code: u16,
        decision: Decision,
        first_byte: Duration,
        total: Duration,
    ) {
        let cluster = cluster.unwrap_or(&self.unknown_cluster);
        let key = (verb, CodeClass::of(code), decision);
        let recorded = HANDLES.try_with(|handles| {
            let mut handles = handles.borrow_mut();
            let at = match handles
                .iter()
                .position(|h| h.metrics == self.id && h.cluster.is(cluster))
            {
                Some(at) => at,
                None => {
                    if handles.len() >= CACHED_CLUSTERS {
                        handles.clear();
                    }
                    handles.push(ClusterHandles {
                        metrics: self.id,
                        cluster: cluster.clone(),
                        first_byte: self.duration(cluster, Phase::FirstByte),
                        total: self.duration(cluster, Phase::Total),
                        requests: Vec::new(),
                    });
                    handles.len() - 1
                }
            };
            let h = &mut handles[at];
            match h.requests.iter().find(|(k, _)| *k == key) {
                Some((_, counter)) => {
                    counter.inc();
                }
                None => {
                    let counter = self.requests.get_or_create(&request_labels(cluster, key)).clone();
                    counter.inc();
                    h.requests.push((key, counter));
                }
            };
            h.first_byte.observe(first_byte.as_secs_f64());
            h.total.observe(total.as_secs_f64());
        });
        if recorded.is_err() {
            // The thread is ending (its cache is gone): straight to the families.
            self.requests.get_or_create(&request_labels(cluster, key)).inc();
            self.duration(cluster, Phase::FirstByte)
                .observe(first_byte.as_secs_f64());
            self.duration(cluster, Phase::Total).observe(total.as_secs_f64());
        }
    }

    fn duration(&self, cluster: &ClusterLabel, phase: Phase) -> Histogram {
        let labels = DurationLabels {
            cluster: cluster.clone(),
            phase,
        };
        self.durations.get_or_create(&labels).clone()
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn inflight(&self) -> GaugeGuard {
        Self::open(&self.inflight)
    }

    /// Counts an open watch until the guard is dropped.
    pub fn watch_opened(&self) -> GaugeGuard {
        Self::open(&self.watches)
    }

    /// Counts an open upgraded stream until the guard is dropped.
    pub fn upgraded_stream_opened(&self) -> GaugeGuard {
        Self::open(&self.upgraded)
    }

    fn open(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }

    /// The whole exposition, `# EOF` included, for a `GET /metrics` answered with
    /// [`CONTENT_TYPE`].
    pub fn render(&self, sources: &Sources<'_>) -> String {
        let scraped = scrape_registry(sources);
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        let encoded = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &scraped))
            .and_then(|()| text::encode_eof(&mut out));
        if encoded.is_err() {
            tracing::error!("encoding metrics failed");
        }
        out
    }
}

/// `VmRSS` of /proc/self/status, in bytes.
fn process_rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A throwaway registry holding this scrape's copies of the values owned elsewhere.
fn scrape_registry(sources: &Sources<'_>) -> Registry {
    let authn = sources.authn.map(|a| a.authn_figures()).unwrap_or_default();
    let audit = sources.audit.map(|a| a.audit_figures()).unwrap_or_default();
    let mut reg = Registry::default();
    let counters = [
        (
            "kop_token_cache_hits",
            "Requests whose token was found in the verified-token cache",
            authn.cache_hits,
        ),
        (
            "kop_token_cache_misses",
            "Requests whose token had to be verified",
            authn.cache_misses,
        ),
        (
            "kop_jwks_refreshes",
            "Fetches of the issuer's key set",
            authn.key_fetches,
        ),
        (
            "kop_jwks_refresh_failures",
            "Failed discovery or key set fetches",
            authn.key_fetch_failures,
        ),
        (
            "kop_audit_events_sent",
            "Audit events the webhook accepted",
            audit.sent,
        ),
        (
            "kop_audit_events_retried",
            "Audit webhook attempts retried",
            audit.retried,
        ),
        (
            "kop_audit_events_dropped",
            "Audit events dropped because the queue was full, or left unsent at shutdown",
            audit.dropped,
        ),
        (
            "kop_audit_events_failed",
            "Audit events given up on: refused by the webhook or out of retries",
            audit.failed,
        ),
    ];
    for (name, help, value) in counters {
        reg.register(name, help, ConstCounter::new(value));
    }
    // What a leak would show first (the soak script watches these): tasks of the runtime
    // serving this scrape, and the process's resident memory and open descriptors (Linux).
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        reg.register(
            "kop_runtime_tasks",
            "Tasks alive in the proxy's async runtime",
            ConstGauge::new(handle.metrics().num_alive_tasks() as i64),
        );
    }
    if let Some(rss) = process_rss_bytes() {
        reg.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            ConstGauge::new(rss),
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        reg.register(
            "process_open_fds",
            "Number of open file descriptors",
            ConstGauge::new(fds.count() as i64),
        );
    }
    let issuer_ready = Family::<IssuerLabels, Gauge>::default();
    let issuer_counters = [
        (
            "kop_issuer_jwks_refreshes",
            "Fetches of the issuer's key set, per issuer",
        ),
        (
            "kop_issuer_jwks_refresh_failures",
            "Failed discovery or key set fetches, per issuer",
        ),
        (
            "kop_issuer_tokens_accepted",
            "Tokens the issuer's rules accepted (cache hits not counted), per issuer",
        ),
        (
            "kop_issuer_tokens_refused",
            "Tokens routed to the issuer and refused, per issuer",
        ),
    ]
    .map(|(name, help)| (name, help, Family::<IssuerLabels, Counter>::default()));
    for i in &authn.issuers {
        let labels = IssuerLabels {
            issuer: i.issuer.clone(),
        };
        issuer_ready.get_or_create(&labels).set(i64::from(i.ready));
        let values = [i.key_fetches, i.key_fetch_failures, i.accepted, i.refused];
        for ((_, _, family), value) in issuer_counters.iter().zip(values) {
            family.get_or_create(&labels).inc_by(value);
        }
    }
    reg.register(
        "kop_issuer_ready",
        "1 once the issuer's keys are loaded, per issuer",
        issuer_ready,
    );
    for (name, help, family) in issuer_counters {
        reg.register(name, help, family);
    }
    let depth = audit.queued.max(0);
    reg.register(
        "kop_audit_queue_depth",
        "Audit events waiting to be sent",
        ConstGauge::new(depth),
    );

    let ages = Family::<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let objects = Family::<ObjectLabels, Gauge>::default();
    let synced = Family::<SourceLabels, Gauge>::default();
    let collisions = Family::<ClusterLabels, Gauge>::default();
    let failing = Family::<SourceLabels, Gauge>::default();
    for (cluster, source) in &sources.failing {
        failing
            .get_or_create(&SourceLabels {
                cluster: cluster.clone(),
                source,
            })
            .set(1);
    }
    for src in &sources.rbac {
        let labels = SourceLabels {
            cluster: src.cluster.clone(),
            source: src.source,
        };
        synced.get_or_create(&labels).set(i64::from(src.synced));
        collisions
            .get_or_create(&ClusterLabels {
                cluster: src.cluster.clone(),
            })
            .set(i64::try_from(src.collisions).unwrap_or(i64::MAX));
        let _ = failing.get_or_create(&labels);
        if let Some(age) = src.snapshot_age {
            ages.get_or_create(&ClusterLabels {
                cluster: src.cluster.clone(),
            })
            .set(age.as_secs_f64());
        }
        for (kind, count) in &src.objects {
            objects
                .get_or_create(&ObjectLabels {
                    cluster: src.cluster.clone(),
                    kind: *kind,
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }
    reg.register_with_unit(
        "kop_rbac_snapshot_age",
        "Time since the cluster's RBAC snapshot in use was built",
        Unit::Seconds,
        ages,
    );
    reg.register(
        "kop_cluster_rbac_synced",
        "1 when the cluster's RBAC snapshot is in place and its watches are healthy, per cluster and source (file or secret)",
        synced,
    );
    reg.register(
        "kop_cluster_build_failing",
        "1 when the cluster's kubeconfig last failed to build (a cluster already serving keeps its previous version)",
        failing,
    );
    reg.register(
        "kop_rbac_role_name_collisions",
        "Roles created in the cluster with the name of a role the proxy defines (built-in, role file, role resources): the proxy's bindings keep the proxy's role",
        collisions,
    );
    reg.register(
        "kop_rbac_objects",
        "RBAC objects and namespaces in the cluster's snapshot",
        objects,
    );
    reg
}

#[cfg(test)]
mod tests;
