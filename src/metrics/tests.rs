use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::*;
// The real counter owners, as the proxy wires them at scrape time.
use crate::audit::webhook::AuditStats;

/// Authentication's figures as a test sets them.
#[derive(Default)]
struct FakeAuthn(std::sync::Mutex<AuthnFigures>);

impl AuthnCounters for FakeAuthn {
    fn authn_figures(&self) -> AuthnFigures {
        self.0.lock().unwrap().clone()
    }
}

const MS: Duration = Duration::from_millis(1);

/// `request_done` with the label types built from plain strings, as the proxy builds them.
fn done(m: &Metrics, cluster: &str, verb: &str, code: u16, d: Decision, first: Duration, total: Duration) {
    let label = (cluster != UNKNOWN_CLUSTER).then(|| ClusterLabel::from(cluster));
    m.request_done(label.as_ref(), Verb::from_kube(verb), code, d, first, total);
}

fn has(out: &str, line: &str) {
    assert!(out.lines().any(|l| l == line), "missing line {line:?} in:\n{out}");
}

fn series<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .collect()
}

#[test]
fn requests_are_counted_by_closed_labels() {
    let m = Metrics::new();
    done(&m, "c1", "get", 200, Decision::Allow, 2 * MS, 3 * MS);
    done(&m, "c1", "get", 200, Decision::Allow, MS / 4, 40 * MS);
    done(&m, "c1", "create", 403, Decision::Deny, MS, MS);
    done(
        &m,
        "c2",
        "watch",
        200,
        Decision::Allow,
        4 * MS,
        Duration::from_secs(90),
    );
    done(
        &m,
        "c2",
        "create",
        101,
        Decision::Allow,
        MS,
        Duration::from_secs(5),
    );
    done(&m, UNKNOWN_CLUSTER, "get", 401, Decision::Unauthenticated, MS, MS);
    done(
        &m,
        "c1",
        "list",
        502,
        Decision::Error,
        Duration::from_secs(30),
        Duration::from_secs(30),
    );
    let out = m.render(&Sources::default());

    has(&out, "# TYPE kop_requests counter");
    has(
        &out,
        r#"kop_requests_total{cluster="c1",verb="get",code_class="2xx",decision="allow"} 2"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="c1",verb="create",code_class="4xx",decision="deny"} 1"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="c2",verb="watch",code_class="2xx",decision="allow"} 1"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="c2",verb="create",code_class="1xx",decision="allow"} 1"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="unknown",verb="get",code_class="4xx",decision="unauthenticated"} 1"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="c1",verb="list",code_class="5xx",decision="error"} 1"#,
    );
    assert_eq!(series(&out, "kop_requests_total").len(), 6);

    has(&out, "# TYPE kop_request_duration_seconds histogram");
    has(&out, "# UNIT kop_request_duration_seconds seconds");
    has(
        &out,
        r#"kop_request_duration_seconds_count{cluster="c1",phase="first_byte"} 4"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_count{cluster="c1",phase="total"} 4"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="0.0005",cluster="c1",phase="first_byte"} 1"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="0.0025",cluster="c1",phase="first_byte"} 3"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="0.0025",cluster="c1",phase="total"} 1"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="0.05",cluster="c1",phase="total"} 3"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="30.0",cluster="c1",phase="total"} 4"#,
    );
    // A 90 s watch only shows in +Inf.
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="60.0",cluster="c2",phase="total"} 1"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_bucket{le="+Inf",cluster="c2",phase="total"} 2"#,
    );
    has(
        &out,
        r#"kop_request_duration_seconds_sum{cluster="c2",phase="total"} 95.0"#,
    );
    assert_eq!(
        series(&out, "kop_request_duration_seconds_bucket").len(),
        3 * 2 * 18
    );
    assert!(out.ends_with("# EOF\n"));
}

#[test]
fn odd_verbs_and_codes_cannot_add_label_values() {
    let m = Metrics::new();
    let long = "x".repeat(10_000);
    let odd = [
        "GET",
        "PROPFIND",
        "",
        "get\n",
        "bind",
        "escalate",
        "impersonate",
        long.as_str(),
    ];
    for verb in odd {
        done(&m, "c1", verb, 200, Decision::Allow, MS, MS);
    }
    for code in [0, 99, 600, 999, u16::MAX] {
        done(&m, "c1", "get", code, Decision::Error, MS, MS);
    }
    let out = m.render(&Sources::default());
    has(
        &out,
        r#"kop_requests_total{cluster="c1",verb="other",code_class="2xx",decision="allow"} 8"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="c1",verb="get",code_class="1xx",decision="error"} 2"#,
    );
    has(
        &out,
        r#"kop_requests_total{cluster="c1",verb="get",code_class="5xx",decision="error"} 3"#,
    );
    assert_eq!(series(&out, "kop_requests_total").len(), 3);
    for verb in ["PROPFIND", "escalate", "xxxx"] {
        assert!(!out.contains(verb), "{verb} leaked into the output");
    }
    for verb in [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "proxy",
    ] {
        assert_eq!(Verb::from_kube(verb).as_str(), verb);
    }
}

#[test]
fn a_method_maps_as_its_lowercase_name_would() {
    for m in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PROPFIND",
    ] {
        let method = http::Method::from_bytes(m.as_bytes()).unwrap();
        assert_eq!(
            Verb::from_method(&method),
            Verb::from_kube(&m.to_ascii_lowercase()),
            "{m}"
        );
    }
}

#[test]
fn gauges_follow_their_guards() {
    let m = Metrics::new();
    let a = m.inflight();
    let b = m.inflight();
    let w = m.watch_opened();
    let u = m.upgraded_stream_opened();
    let out = m.render(&Sources::default());
    has(&out, "kop_inflight_requests 2");
    has(&out, "kop_open_watches 1");
    has(&out, "kop_open_upgraded_streams 1");
    drop((a, w, u));
    let out = m.render(&Sources::default());
    has(&out, "kop_inflight_requests 1");
    has(&out, "kop_open_watches 0");
    has(&out, "kop_open_upgraded_streams 0");
    drop(b);
    has(&m.render(&Sources::default()), "kop_inflight_requests 0");
}

#[test]
fn sources_are_read_at_scrape_time() {
    let m = Metrics::new();
    let authn = FakeAuthn::default();
    let audit = AuditStats::default();
    let sources = |authn, audit| Sources {
        authn: Some(authn),
        audit: Some(audit),
        rbac: vec![
            RbacSource {
                cluster: "c1".into(),
                source: "file",
                synced: true,
                snapshot_age: Some(Duration::from_millis(12_500)),
                objects: vec![
                    (RbacKind::Role, 3),
                    (RbacKind::ClusterRoleBinding, 7),
                    (RbacKind::Namespace, 4),
                ],
                collisions: 2,
            },
            RbacSource {
                cluster: "c2".into(),
                source: "secret",
                synced: false,
                snapshot_age: None,
                objects: vec![],
                collisions: 0,
            },
        ],
        failing: vec![("c3".into(), "secret")],
    };
    let out = m.render(&sources(&authn as &dyn AuthnCounters, &audit));
    has(&out, "kop_token_cache_hits_total 0");
    has(&out, "kop_audit_queue_depth 0");

    *authn.0.lock().unwrap() = AuthnFigures {
        cache_hits: 41,
        cache_misses: 2,
        key_fetches: 5,
        key_fetch_failures: 1,
        issuers: vec![
            IssuerFigures {
                issuer: "https://kc/realms/people".into(),
                ready: true,
                key_fetches: 4,
                key_fetch_failures: 0,
                accepted: 30,
                refused: 2,
            },
            IssuerFigures {
                issuer: "https://kc/realms/robots".into(),
                ready: false,
                key_fetches: 1,
                key_fetch_failures: 1,
                accepted: 0,
                refused: 7,
            },
        ],
    };
    let set = |c: &AtomicU64, v| c.store(v, Ordering::Relaxed);
    set(&audit.sent, 100);
    set(&audit.retried, 4);
    set(&audit.dropped, 3);
    set(&audit.failed, 2);
    audit.queued.store(9, Ordering::Relaxed);
    let out = m.render(&sources(&authn as &dyn AuthnCounters, &audit));
    for line in [
        "kop_token_cache_hits_total 41",
        "kop_token_cache_misses_total 2",
        "kop_jwks_refreshes_total 5",
        "kop_jwks_refresh_failures_total 1",
        r#"kop_issuer_ready{issuer="https://kc/realms/people"} 1"#,
        r#"kop_issuer_ready{issuer="https://kc/realms/robots"} 0"#,
        r#"kop_issuer_jwks_refreshes_total{issuer="https://kc/realms/people"} 4"#,
        r#"kop_issuer_jwks_refresh_failures_total{issuer="https://kc/realms/robots"} 1"#,
        r#"kop_issuer_tokens_accepted_total{issuer="https://kc/realms/people"} 30"#,
        r#"kop_issuer_tokens_refused_total{issuer="https://kc/realms/robots"} 7"#,
        "kop_audit_events_sent_total 100",
        "kop_audit_events_retried_total 4",
        "kop_audit_events_dropped_total 3",
        "kop_audit_events_failed_total 2",
        "kop_audit_queue_depth 9",
        "# TYPE kop_rbac_snapshot_age_seconds gauge",
        r#"kop_rbac_snapshot_age_seconds{cluster="c1"} 12.5"#,
        r#"kop_rbac_objects{cluster="c1",kind="Role"} 3"#,
        r#"kop_rbac_objects{cluster="c1",kind="ClusterRoleBinding"} 7"#,
        r#"kop_rbac_objects{cluster="c1",kind="Namespace"} 4"#,
        r#"kop_rbac_role_name_collisions{cluster="c1"} 2"#,
        r#"kop_cluster_rbac_synced{cluster="c1",source="file"} 1"#,
        r#"kop_cluster_rbac_synced{cluster="c2",source="secret"} 0"#,
        r#"kop_cluster_build_failing{cluster="c2",source="secret"} 0"#,
        r#"kop_cluster_build_failing{cluster="c3",source="secret"} 1"#,
    ] {
        has(&out, line);
    }
    assert!(
        !out.contains(r#"kop_rbac_snapshot_age_seconds{cluster="c2""#),
        "a cluster without a snapshot has no age yet"
    );

    // A transiently negative depth (a send racing the sender) is never shown.
    let racing = AuditStats {
        queued: AtomicI64::new(-1),
        ..AuditStats::default()
    };
    let out = m.render(&Sources {
        audit: Some(&racing),
        ..Sources::default()
    });
    has(&out, "kop_audit_queue_depth 0");
    has(&out, "kop_token_cache_hits_total 0");
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    done(&m, "a\"b\\c\nd", "get", 200, Decision::Allow, MS, MS);
    let out = m.render(&Sources::default());
    has(
        &out,
        r#"kop_requests_total{cluster="a\"b\\c\nd",verb="get",code_class="2xx",decision="allow"} 1"#,
    );
}

#[test]
fn shareable_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Metrics>();
    send_sync::<GaugeGuard>();
}

#[tokio::test]
async fn process_and_runtime_figures_are_read_at_scrape_time() {
    let m = Metrics::new();
    let value = |out: &str, name: &str| -> i64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
            .parse()
            .unwrap()
    };
    let before = m.render(&Sources::default());
    assert!(value(&before, "process_resident_memory_bytes") > 1 << 20);
    // Other tests of this process open and close files meanwhile: only a floor is certain.
    assert!(value(&before, "process_open_fds") >= 3);
    let tasks = value(&before, "kop_runtime_tasks");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let held = tokio::spawn(async move {
        let _ = rx.await;
    });
    let during = m.render(&Sources::default());
    assert_eq!(value(&during, "kop_runtime_tasks"), tasks + 1);
    drop(tx);
    held.await.unwrap();
}

#[test]
fn cached_handles_count_into_their_own_instance_and_cluster() {
    // The proxy keeps one label per cluster and records through a per-thread handle cache:
    // two instances (two proxies in one process) and many clusters must never mix.
    let (a, b) = (Metrics::new(), Metrics::new());
    let c1 = ClusterLabel::from("c1");
    let others: Vec<ClusterLabel> = (0..CACHED_CLUSTERS + 5)
        .map(|i| ClusterLabel::from(format!("x{i}").as_str()))
        .collect();
    for round in 0..3 {
        a.request_done(Some(&c1), Verb::Get, 200, Decision::Allow, MS, 2 * MS);
        b.request_done(Some(&c1), Verb::Get, 200, Decision::Allow, MS, 2 * MS);
        b.request_done(Some(&c1), Verb::Get, 404, Decision::Allow, MS, 2 * MS);
        // More clusters than a thread keeps: the cache starts over and still counts right.
        for (i, other) in others.iter().enumerate() {
            if i % 3 == round {
                a.request_done(Some(other), Verb::List, 200, Decision::Allow, MS, MS);
            }
        }
    }
    let (out_a, out_b) = (a.render(&Sources::default()), b.render(&Sources::default()));
    let get = |c: &str, class: &str| {
        format!(
            "kop_requests_total{{cluster=\"{c}\",verb=\"get\",code_class=\"{class}\",decision=\"allow\"}} 3"
        )
    };
    has(&out_a, &get("c1", "2xx"));
    has(&out_b, &get("c1", "2xx"));
    has(&out_b, &get("c1", "4xx"));
    assert!(!out_a.contains("code_class=\"4xx\""), "{out_a}");
    has(
        &out_b,
        "kop_request_duration_seconds_count{cluster=\"c1\",phase=\"total\"} 6",
    );
    for (i, _) in others.iter().enumerate() {
        let line = format!(
            "kop_requests_total{{cluster=\"x{i}\",verb=\"list\",code_class=\"2xx\",decision=\"allow\"}} 1"
        );
        has(&out_a, &line);
    }
    assert!(!out_b.contains("cluster=\"x0\""), "{out_b}");
}
