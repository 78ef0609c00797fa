//! Whose identity reaches the cluster, asserted on the exact headers the fake API server
//! receives: `kubectl --as` (allowed, refused, malformed) in each mode, the user's own token
//! (`passthrough-user-token`, per cluster or `--disable-impersonation`), and `--token-passthrough`
//! (TokenReview, its cache, one review in flight per token, errors never cached).

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::apiserver::{FakeApi, REVIEW_FAILS, apiserver};
use support::client::collect;
use support::issuer::issuer;
use support::objects::{cluster_role, cluster_role_binding, group, namespace, role_binding, user};
use support::proxy::{Cred, TestProxy, proxy};
use support::wait_until;
use support::webhook::receiver;

const CONFIGMAPS: &str = "/api/v1/namespaces/dev/configmaps";

/// A cluster where ann may impersonate bob and group team, team may read configmaps, and
/// nobody else may impersonate.
fn grants(api: &FakeApi) {
    let s = api.store();
    s.put("namespaces", namespace("dev"));
    s.put(
        "clusterroles",
        cluster_role(
            "impersonate-bob",
            json!([{"apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"], "verbs": ["impersonate"]},
                   {"apiGroups": [""], "resources": ["groups"], "resourceNames": ["team"], "verbs": ["impersonate"]}]),
        ),
    );
    s.put(
        "clusterrolebindings",
        cluster_role_binding("ann-impersonates", "impersonate-bob", json!([user("ann")])),
    );
    s.put(
        "clusterroles",
        cluster_role(
            "reader",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
        ),
    );
    s.put(
        "clusterrolebindings",
        cluster_role_binding("team-reads", "reader", json!([group("team")])),
    );
}

/// The ServiceAccount ci/robot may read configmaps in dev (as `reader`).
fn robot_reads(api: &FakeApi) {
    api.store().put(
        "rolebindings",
        role_binding(
            "dev",
            "robot-reads",
            "ClusterRole",
            "reader",
            json!([{"kind": "ServiceAccount", "name": "robot", "namespace": "ci"}]),
        ),
    );
}

async fn get(p: &TestProxy, path: &str, token: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let mut conn = p.conn().await;
    let resp = conn.get(path, &headers).await.expect("request");
    let code = resp.status();
    let body = collect(resp.into_body()).await;
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

const AS_BOB: [(&str, &str); 2] = [("impersonate-user", "bob"), ("impersonate-group", "team")];

#[tokio::test]
async fn kubectl_as_needs_impersonate_grants_and_acts_as_the_target() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    let hook = receiver().await;
    let p = proxy(&iss)
        .arg(&format!("--audit-webhook-server={}", hook.url))
        .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let ann = iss.token().sub("ann").sign();
    let dev = iss.token().sub("dev").groups(&["team"]).sign();
    let path = format!("/k8s{CONFIGMAPS}");

    // ann has no grant of her own, but bob in team has.
    assert_eq!(get(&p, &path, &ann, &[]).await.0, StatusCode::FORBIDDEN);
    api.clear_requests();
    let (code, _) = get(&p, &path, &ann, &AS_BOB).await;
    assert_eq!(code, StatusCode::OK);
    let up = api.last();
    assert_eq!(up.header("authorization"), Some("Bearer proxy-token"));
    assert!(
        up.headers.keys().all(|k| !k.as_str().starts_with("impersonate-")),
        "credentials mode sends no Impersonate-*: {:?}",
        up.headers
    );
    // Logged and audited as bob, with ann as the person behind it.
    let line = p.wait_log("URI:/k8s/api/v1/namespaces/dev/configmaps").await;
    assert!(
        p.log
            .lines()
            .iter()
            .any(|l| l.contains("AuSuccess") && l.contains("inbound:[bob / team / ] impersonator:[ann / ]")),
        "the access line names bob and the person behind him: {:?}",
        p.log.lines()
    );
    let _ = line;
    let mut event = Value::Null;
    wait_until("the audit event", 5, || {
        event = hook
            .events()
            .into_iter()
            .map(|(_, _, e)| e)
            .find(|e| e["email"] == "bob")
            .unwrap_or(Value::Null);
        !event.is_null()
    })
    .await;
    assert_eq!(event["impersonated_by"]["email"], "ann", "{event}");
    assert_eq!(event["groups"], json!(["team"]));

    // dev may not impersonate: kube-apiserver's own words, nothing forwarded.
    api.clear_requests();
    let (code, status) = get(&p, &path, &dev, &AS_BOB).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        r#"users "bob" is forbidden: User "dev" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    // Another group, a uid, an extra: each needs its own grant.
    for extra in [
        [
            ("impersonate-user", "bob"),
            ("impersonate-group", "system:masters"),
        ],
        [("impersonate-user", "bob"), ("impersonate-uid", "1")],
        [("impersonate-user", "bob"), ("impersonate-extra-scopes", "all")],
        [("impersonate-user", "admin"), ("impersonate-group", "team")],
    ] {
        let (code, status) = get(&p, &path, &ann, &extra).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{extra:?}: {status}");
        assert!(
            status["message"].as_str().unwrap().contains("cannot impersonate"),
            "{status}"
        );
    }
    // Malformed sets are 400 Statuses.
    for extra in [
        vec![("impersonate-group", "team")],
        vec![("impersonate-user", "bob"), ("impersonate-scopes", "x")],
        vec![("impersonate-user", "bob"), ("impersonate-user", "eve")],
    ] {
        let (code, status) = get(&p, &path, &ann, &extra).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{extra:?}");
        assert_eq!(status["kind"], "Status");
    }
    assert!(
        api.user_requests().is_empty(),
        "no refused impersonation reached the cluster"
    );

    // kubectl auth can-i --as bob answers for bob.
    let mut conn = p.conn().await;
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": "dev"}}});
    let req = http::Request::post("/k8s/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .header("authorization", format!("Bearer {ann}"))
        .header("impersonate-user", "bob")
        .header("impersonate-group", "team")
        .header("content-type", "application/json")
        .body(support::full(review.to_string()))
        .unwrap();
    let resp = conn.send(req).await.unwrap();
    let answer: Value = serde_json::from_slice(&collect(resp.into_body()).await).unwrap();
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
}

#[tokio::test]
async fn impersonate_mode_sends_the_target_and_the_person_behind_it() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    let p = proxy(&iss)
        .arg("--impersonate-upstream")
        .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let ann = iss.token().sub("ann").groups(&["staff"]).sign();
    api.clear_requests();
    let (code, _) = get(&p, &format!("/k8s{CONFIGMAPS}"), &ann, &AS_BOB).await;
    assert_eq!(code, StatusCode::OK);
    let up = api.last();
    assert_eq!(up.header("authorization"), Some("Bearer proxy-token"));
    assert_eq!(up.header("impersonate-user"), Some("bob"));
    assert_eq!(
        up.header_all("impersonate-group"),
        ["team", "system:authenticated"]
    );
    assert_eq!(
        up.header_all("impersonate-extra-authentication.kubernetes.io%2foriginal-username"),
        ["ann"]
    );
    assert_eq!(
        up.header_all("impersonate-extra-authentication.kubernetes.io%2foriginal-groups"),
        ["staff"]
    );
}

/// Extras that name the real person upstream are the proxy's to write: a caller allowed to
/// impersonate any extra still cannot ask for them, in any mode.
#[tokio::test]
async fn clients_cannot_write_the_extras_that_name_the_real_person() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    api.store().put(
        "clusterroles",
        cluster_role(
            "impersonate-all-extras",
            json!([{"apiGroups": ["authentication.k8s.io"], "resources": ["*"], "verbs": ["impersonate"]}]),
        ),
    );
    api.store().put(
        "clusterrolebindings",
        cluster_role_binding("ann-extras", "impersonate-all-extras", json!([user("ann")])),
    );
    let p = proxy(&iss)
        .arg("--impersonate-upstream")
        .arg("--extra-user-headers=team=platform")
        .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let ann = iss.token().sub("ann").groups(&["ops"]).sign();
    let path = format!("/k8s{CONFIGMAPS}");
    // An extra she may impersonate goes through.
    let (code, _) = get(
        &p,
        &path,
        &ann,
        &[AS_BOB[0], AS_BOB[1], ("impersonate-extra-scopes", "x")],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    api.clear_requests();
    for key in [
        "authentication.kubernetes.io%2foriginal-username",
        "Authentication.Kubernetes.io%2FOriginal-Groups",
        "authentication.kubernetes.io%2foriginal-uid",
        "remote-client-ip",
        "team",
    ] {
        let name = format!("impersonate-extra-{key}");
        let (code, status) = get(
            &p,
            &path,
            &ann,
            &[AS_BOB[0], AS_BOB[1], (name.as_str(), "mallory")],
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{key}: {status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or("")
                .contains("set by the proxy"),
            "{status}"
        );
    }
    assert!(api.user_requests().is_empty(), "nothing reached the cluster");
}

#[tokio::test]
async fn the_users_own_token_per_cluster_and_with_disable_impersonation() {
    let iss = issuer().run().await;
    let own = apiserver().name("own").run().await;
    let creds = apiserver().name("creds").run().await;
    grants(&own);
    grants(&creds);
    let p = proxy(&iss)
        .cluster("own", &own, "", Cred::Token("proxy-token".into()))
        .identity("own", "passthrough-user-token")
        .cluster("creds", &creds, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let t = iss.token().sub("tess").groups(&["team"]).sign();
    let (code, _) = get(&p, &format!("/own{CONFIGMAPS}"), &t, &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        own.last().header("authorization"),
        Some(format!("Bearer {t}").as_str())
    );
    let (code, _) = get(&p, &format!("/creds{CONFIGMAPS}"), &t, &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(creds.last().header("authorization"), Some("Bearer proxy-token"));
    // The proxy's RBAC still decides first.
    let (code, _) = get(&p, "/own/api/v1/namespaces/dev/secrets", &t, &[]).await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // kubectl --as with the user's own token goes on exactly as asked, for the cluster to check.
    let ann = iss.token().sub("ann").sign();
    own.clear_requests();
    let (code, _) = get(&p, &format!("/own{CONFIGMAPS}"), &ann, &AS_BOB).await;
    assert_eq!(code, StatusCode::OK);
    let up = own.last();
    assert_eq!(up.header("authorization"), Some(format!("Bearer {ann}").as_str()));
    assert_eq!(up.header("impersonate-user"), Some("bob"));
    assert_eq!(up.header_all("impersonate-group"), ["team"]);

    // --disable-impersonation makes it every cluster's default.
    let q = proxy(&iss)
        .arg("--disable-impersonation")
        .cluster("creds", &creds, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let (code, _) = get(&q, &format!("/creds{CONFIGMAPS}"), &t, &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        creds.last().header("authorization"),
        Some(format!("Bearer {t}").as_str())
    );
}

/// The proxy's client certificate (its identity in the cluster) never accompanies a user's own
/// token, in either way a token goes on as it came.
#[tokio::test]
async fn a_users_token_never_travels_with_the_proxys_client_certificate() {
    let iss = issuer().run().await;
    let client_ca = support::pki::Ca::new("cluster-client-ca");
    let api = apiserver().name("k8s").accept_client_cert(&client_ca).run().await;
    grants(&api);
    api.accept_token("sa-token", "system:serviceaccount:ci:robot", &["team"]);
    let cert = || Cred::ClientCert(client_ca.issue_client("kube-oidc-proxy", &[]));
    let p = proxy(&iss)
        .arg("--token-passthrough")
        .cluster("creds", &api, "", cert())
        .cluster("own", &api, "", cert())
        .identity("own", "passthrough-user-token")
        .run()
        .await;
    let t = iss.token().sub("tess").groups(&["team"]).sign();
    // The proxy's own requests carry its certificate: the check below can tell.
    assert_eq!(
        get(&p, &format!("/creds{CONFIGMAPS}"), &t, &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(api.last().client_cert_cn.as_deref(), Some("kube-oidc-proxy"));
    for (cluster, token) in [("own", t.as_str()), ("creds", "sa-token")] {
        api.clear_requests();
        let (code, _) = get(&p, &format!("/{cluster}{CONFIGMAPS}"), token, &[]).await;
        assert_eq!(code, StatusCode::OK, "{cluster}");
        let up = api.last();
        assert_eq!(
            up.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(
            up.client_cert_cn, None,
            "{cluster}: no proxy certificate with a user's token"
        );
    }
}

#[tokio::test]
async fn token_passthrough_reviews_with_the_cluster_and_caches_briefly() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    api.store().put("namespaces", namespace("prod"));
    robot_reads(&api);
    api.accept_token(
        "sa-token",
        "system:serviceaccount:ci:robot",
        &["system:serviceaccounts"],
    );
    api.accept_token(
        "sa-token-2",
        "system:serviceaccount:ci:robot",
        &["system:serviceaccounts"],
    );
    let p = Arc::new(
        proxy(&iss)
            .arg("--token-passthrough")
            .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
            .run()
            .await,
    );
    let path = format!("/k8s{CONFIGMAPS}");
    for _ in 0..3 {
        let (code, _) = get(&p, &path, "sa-token", &[]).await;
        assert_eq!(code, StatusCode::OK);
    }
    assert_eq!(api.token_reviews(), 1, "one review, then the cache");
    let last = api.last();
    assert_eq!(
        last.header("authorization"),
        Some("Bearer sa-token"),
        "the token goes on unchanged"
    );
    // The review itself went with the proxy's credentials and the token in its body.
    let review = api
        .requests()
        .into_iter()
        .find(|r| r.uri.ends_with("/tokenreviews"))
        .unwrap();
    assert_eq!(review.header("authorization"), Some("Bearer proxy-token"));
    // The proxy's RBAC applies to the reviewed user.
    let (code, status) = get(&p, "/k8s/api/v1/namespaces/prod/configmaps", "sa-token", &[]).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");

    // Unknown tokens: 401 without detail.
    let (code, status) = get(&p, &path, "not-a-token", &[]).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(status["message"], "Unauthorized");

    // Twenty at once with a new token: one review in flight.
    let before = api.token_reviews();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (p, path) = (p.clone(), path.clone());
            tokio::spawn(async move { get(&p, &path, "sa-token-2", &[]).await.0 })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(api.token_reviews() - before, 1);

    // A failing review is not cached: each request asks again.
    let before = api.token_reviews();
    for _ in 0..2 {
        assert_eq!(
            get(&p, &path, REVIEW_FAILS, &[]).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(api.token_reviews() - before, 2);

    // The issuer's own tokens are never shown to a cluster, even when the issuer refuses them
    // (expired, another audience): 401 without a review.
    let before = api.token_reviews();
    let expired = iss.token().sub("ann").exp_in(-3600).sign();
    let wrong_audience = iss.token().sub("ann").aud("someone-else").sign();
    for t in [&expired, &wrong_audience] {
        assert_eq!(get(&p, &path, t, &[]).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(api.token_reviews(), before, "no review of the issuer's tokens");

    // A refusal is cached briefly, then asked again.
    let before = api.token_reviews();
    get(&p, &path, "late-token", &[]).await;
    get(&p, &path, "late-token", &[]).await;
    assert_eq!(api.token_reviews() - before, 1);
    api.accept_token("late-token", "system:serviceaccount:ci:robot", &[]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(&p, &path, "late-token", &[]).await.0, StatusCode::OK);
}

/// Anyone can present a made-up token, and each review goes out with the proxy's credentials:
/// reviews are bounded per client address (and in total), answered 429 with `Retry-After`
/// beyond that, while tokens answered from the cache are never held back.
#[tokio::test]
async fn token_reviews_are_bounded_per_client() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    robot_reads(&api);
    api.accept_token("sa-token", "system:serviceaccount:ci:robot", &[]);
    let p = proxy(&iss)
        .arg("--token-passthrough")
        .arg("--token-passthrough-reviews-per-client=2")
        .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let path = format!("/k8s{CONFIGMAPS}");
    assert_eq!(get(&p, &path, "sa-token", &[]).await.0, StatusCode::OK);
    // The burst (twice the rate) is 4 reviews: the valid token took one.
    for i in 0..3 {
        let (code, _) = get(&p, &path, &format!("made-up-{i}"), &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "made-up-{i}");
    }
    let mut conn = p.conn().await;
    let resp = conn
        .get(&path, &[("authorization", "Bearer made-up-flood")])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    for i in 0..20 {
        let (code, _) = get(&p, &path, &format!("flood-{i}"), &[]).await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(api.token_reviews(), 4, "no review beyond the bound was sent");
    // The cached token is not held back.
    for _ in 0..10 {
        assert_eq!(get(&p, &path, "sa-token", &[]).await.0, StatusCode::OK);
    }
    // Nor is the issuer's own token, which needs no review.
    let ann = iss.token().sub("ann").groups(&["team"]).sign();
    assert_eq!(get(&p, &path, &ann, &[]).await.0, StatusCode::OK);
    // Half a second later one more review is allowed (2 a second).
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(
        get(&p, &path, "made-up-late", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.token_reviews(), 5);
}

/// Behind a trusted front proxy the client is the address it appended last: a client that
/// forges its own `X-Forwarded-For` (a front proxy that adds a second field, as HAProxy does)
/// cannot pose as a new address for each review.
#[tokio::test]
async fn a_forged_forwarded_for_does_not_reset_the_review_bound() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    let p = proxy(&iss)
        .arg("--token-passthrough")
        .arg("--token-passthrough-reviews-per-client=2")
        .arg("--trusted-proxies=127.0.0.1")
        .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
        .run()
        .await;
    let path = format!("/k8s{CONFIGMAPS}");
    let mut codes = Vec::new();
    for i in 0..8 {
        let forged = format!("198.51.100.{i}");
        let auth = format!("Bearer made-up-{i}");
        let mut conn = p.conn().await;
        let headers = [
            ("authorization", auth.as_str()),
            ("x-forwarded-for", forged.as_str()),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        codes.push(conn.get(&path, &headers).await.unwrap().status());
    }
    assert_eq!(&codes[..4], [StatusCode::UNAUTHORIZED; 4], "{codes:?}");
    assert_eq!(&codes[4..], [StatusCode::TOO_MANY_REQUESTS; 4], "{codes:?}");
    // Another client behind the same front proxy has its own bound.
    let mut conn = p.conn().await;
    let headers = [
        ("authorization", "Bearer made-up-x"),
        ("x-forwarded-for", "203.0.113.8"),
    ];
    assert_eq!(
        conn.get(&path, &headers).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Callers waiting on one token's review against a hanging cluster each give up after one
/// review timeout: a failed review lets the next caller try its own, and without a bound on
/// the whole wait the last of N callers would wait N timeouts in a row.
#[tokio::test]
async fn a_hanging_review_costs_each_caller_one_timeout_at_most() {
    let iss = issuer().run().await;
    let api = apiserver().name("k8s").run().await;
    grants(&api);
    let p = Arc::new(
        proxy(&iss)
            .arg("--token-passthrough")
            .cluster("k8s", &api, "", Cred::Token("proxy-token".into()))
            .run()
            .await,
    );
    api.delay_token_reviews(Duration::from_secs(60));
    let path = format!("/k8s{CONFIGMAPS}");
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            let path = path.clone();
            tokio::spawn(async move { get(&p, &path, "slow-token", &[]).await.0 })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "4 callers took {took:?}: one 10 s timeout each, not in a row"
    );
}
