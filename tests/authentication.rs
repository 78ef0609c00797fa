//! OIDC authentication end to end through the proxy: good tokens, hostile tokens, key
//! rotation and the rate limit on refetching keys.

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::apiserver::{FakeApi, apiserver};
use support::issuer::{Issuer, KeyKind, issuer};
use support::proxy::{Cred, TestProxy, proxy};

#[tokio::test]
async fn hostile_tokens_are_refused_with_a_bare_401() {
    let iss = issuer().run().await; // RSA, RS256: the HS256-with-public-key attack needs RSA
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-required-claim=tenant=blue")
        .arg("--oidc-jwks-min-refetch-interval=100ms") // the unknown kid waits for one fetch
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let good = || iss.token().groups(&["a:devops"]).claim("tenant", json!("blue"));
    let (code, _, _) = p.get("/a/api/v1/pods", Some(&good().sign())).await;
    assert_eq!(code, StatusCode::OK, "the control token works");

    let hostile = [
        ("expired", good().exp_in(-120).sign()),
        ("not yet valid", good().nbf_in(600).sign()),
        ("issued in the future", good().iat_in(600).sign()),
        ("wrong issuer", good().iss("https://evil.example").sign()),
        ("wrong audience", good().aud("someone-else").sign()),
        ("no audience", good().without("aud").sign()),
        ("no expiry", good().without("exp").sign()),
        ("unknown kid", good().kid(Some("nobody")).sign()),
        ("alg none", good().sign_alg_none()),
        (
            "HS256 signed with the RSA public key",
            good().sign_hs256_with_public_key(),
        ),
        ("tampered payload", good().sign_tampered()),
        (
            "critical header extension",
            good()
                .header_field("crit", json!(["exp"]))
                .header_field("exp", json!(1))
                .sign(),
        ),
        (
            "unencoded payload (b64: false)",
            good().header_field("b64", json!(false)).sign(),
        ),
        (
            "crit b64 false",
            good()
                .header_field("crit", json!(["b64"]))
                .header_field("b64", json!(false))
                .sign(),
        ),
        ("foreign key with a published kid", good().sign_with_foreign_key()),
        ("missing required claim", iss.token().groups(&["a:devops"]).sign()),
        (
            "wrong required claim",
            good().claim("tenant", json!("red")).sign(),
        ),
        ("system: user name", good().sub("system:admin").sign()),
    ];
    for (what, token) in hostile {
        let (code, _, body) = p.get("/a/api/v1/pods", Some(&token)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{what}");
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["message"], "Unauthorized", "{what}: nothing leaks");
    }
    assert_eq!(
        a.user_requests().len(),
        1,
        "only the control request reached the API server"
    );
}

#[tokio::test]
async fn system_groups_are_never_taken_from_the_token() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    a.store().put(
        "clusterrolebindings",
        support::objects::cluster_role_binding(
            "admins",
            "cluster-admin",
            json!([support::objects::group("system:masters")]),
        ),
    );
    a.store().put(
        "clusterroles",
        support::objects::cluster_role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
    );
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let token = iss
        .token()
        .sub("mallory")
        .groups(&["system:masters", "ops"])
        .sign();
    let (code, _, body) = p.get("/a/api/v1/secrets", Some(&token)).await;
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "system:masters from the IdP grants nothing: {}",
        String::from_utf8_lossy(&body)
    );
    let line = p.wait_log("AuFail").await;
    assert!(line.contains("URI:/a/api/v1/secrets"), "{line}");
}

/// An ES256 issuer, one cluster with discovery granted, a proxy with this refetch window.
async fn es256_ring(window: &str) -> (Issuer, FakeApi, TestProxy) {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    support::objects::grant_discovery(a.store());
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg(&format!("--oidc-jwks-min-refetch-interval={window}"))
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    (iss, a, p)
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_unknown_kids_refetch_at_most_once_per_window() {
    let (iss, _a, p) = es256_ring("1s").await;
    let fetches_at_start = iss.jwks_fetches();

    // A burst of tokens with kids nobody published: all wait for one fetch, all refused.
    let bogus: Vec<String> = (0..20)
        .map(|i| {
            iss.token()
                .groups(&["a:devops"])
                .kid(Some(&format!("bogus-{i}")))
                .sign()
        })
        .collect();
    let codes = futures_util::future::join_all(bogus.iter().map(|t| p.get("/a/version", Some(t)))).await;
    assert!(codes.iter().all(|c| c.0 == StatusCode::UNAUTHORIZED));
    assert_eq!(
        iss.jwks_fetches() - fetches_at_start,
        1,
        "one fetch for the burst"
    );

    // The issuer rotates right after that fetch, inside the window: tokens signed with the new
    // key wait for the next permitted fetch instead of getting 401, and share it.
    iss.rotate();
    let fetches_before = iss.jwks_fetches();
    let started = std::time::Instant::now();
    let fresh: Vec<String> = (0..30)
        .map(|_| iss.token().groups(&["a:devops"]).sign())
        .collect();
    let codes = futures_util::future::join_all(fresh.iter().map(|t| p.get("/a/version", Some(t)))).await;
    assert!(
        codes.iter().all(|c| c.0 == StatusCode::OK),
        "rotated key accepted: {:?}",
        codes.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    assert_eq!(
        iss.jwks_fetches() - fetches_before,
        1,
        "one fetch for all of them"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held only until the window ended: {:?}",
        started.elapsed()
    );

    // Cached tokens are served without verification work: the same token again.
    let t = &fresh[0];
    let hits_before = p.running().authn.cache_figures().0;
    assert_eq!(p.get("/a/version", Some(t)).await.0, StatusCode::OK);
    let hits_after = p.running().authn.cache_figures().0;
    assert_eq!(hits_after, hits_before + 1);
}

#[tokio::test]
async fn a_foreign_token_with_an_unknown_kid_costs_no_fetch_and_no_wait() {
    // A ServiceAccount token on its way to a TokenReview looks like this: RS256, a kid, another
    // issuer. It must neither wait for the refetch window nor cause a fetch.
    let iss = issuer().run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let fetches = iss.jwks_fetches();
    let started = std::time::Instant::now();
    let foreign = iss
        .token()
        .groups(&["a:devops"])
        .iss("https://kubernetes.default.svc")
        .kid(Some("sa-key-1"))
        .sign();
    assert_eq!(
        p.get("/a/version", Some(&foreign)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(iss.jwks_fetches(), fetches, "no fetch for another issuer's kid");
}

#[tokio::test]
async fn a_window_longer_than_the_hold_bound_refuses_instead_of_waiting() {
    let (iss, _a, p) = es256_ring("10m").await;
    iss.rotate();
    let fetches = iss.jwks_fetches();
    let started = std::time::Instant::now();
    let t = iss.token().groups(&["a:devops"]).sign();
    assert_eq!(p.get("/a/version", Some(&t)).await.0, StatusCode::UNAUTHORIZED);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(iss.jwks_fetches(), fetches, "no fetch inside the window");
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let iss = issuer()
        .key_kind(KeyKind::EcP256)
        .discovery_issuer_override(Some("https://other.example".into()))
        .run()
        .await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .no_wait()
        .run()
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        p.probe_status("/ready").await,
        503,
        "a mismatching discovery document is never trusted"
    );
    let t = iss.token().groups(&["a:devops"]).sign();
    assert_eq!(p.get("/a/version", Some(&t)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn groups_claim_and_prefixes_follow_the_flags() {
    let iss = issuer().key_kind(KeyKind::EcP256).run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .arg("--oidc-signing-algs=ES256")
        .arg("--oidc-username-claim=email")
        .arg("--oidc-username-prefix=oidc:")
        .arg("--oidc-groups-claim=roles")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    a.store().put(
        "clusterrolebindings",
        support::objects::cluster_role_binding(
            "ann",
            "view",
            json!([support::objects::user("oidc:ann@example.com")]),
        ),
    );
    a.store().put(
        "clusterroles",
        support::objects::cluster_role(
            "view",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
        ),
    );
    let ok = iss
        .token()
        .email("ann@example.com", Some(true))
        .claim("roles", json!(["r1"]))
        .sign();
    let mut code = StatusCode::FORBIDDEN;
    for _ in 0..50 {
        code = p.get("/a/api/v1/pods", Some(&ok)).await.0;
        if code == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, StatusCode::OK);
    let line = p.wait_log("AuSuccess").await;
    assert!(line.contains("inbound:[oidc:ann@example.com / r1 / ]"), "{line}");
    let unverified = iss.token().email("ann@example.com", Some(false)).sign();
    assert_eq!(
        p.get("/a/api/v1/pods", Some(&unverified)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// Times at the far ends of what JSON numbers can say never panic anywhere (cache expiry,
/// skew arithmetic): a far-future `exp` is simply valid (and cached for at most the cache's
/// own limit), far-future `nbf` and `iat` are refused, and absurd past values change nothing.
#[tokio::test]
async fn extreme_claim_times_never_panic() {
    let iss = issuer().run().await;
    let a = apiserver().name("a").run().await;
    let p = proxy(&iss)
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let ok = [
        (
            "exp 1e300",
            iss.token()
                .groups(&["a:devops"])
                .claim("exp", json!(1e300))
                .sign(),
        ),
        (
            "exp u64::MAX",
            iss.token()
                .groups(&["a:devops"])
                .claim("exp", json!(u64::MAX))
                .sign(),
        ),
        (
            "nbf -1e300",
            iss.token()
                .groups(&["a:devops"])
                .claim("nbf", json!(-1e300))
                .sign(),
        ),
        (
            "iat -1e300",
            iss.token()
                .groups(&["a:devops"])
                .claim("iat", json!(-1e300))
                .sign(),
        ),
    ];
    for (what, token) in ok {
        // Twice: the second answer comes from the token cache.
        for _ in 0..2 {
            let (code, _, _) = p.get("/a/api/v1/pods", Some(&token)).await;
            assert_eq!(code, StatusCode::OK, "{what}");
        }
    }
    let refused = [
        (
            "exp -1e300",
            iss.token()
                .groups(&["a:devops"])
                .claim("exp", json!(-1e300))
                .sign(),
        ),
        (
            "nbf 1e300",
            iss.token()
                .groups(&["a:devops"])
                .claim("nbf", json!(1e300))
                .sign(),
        ),
        (
            "iat 1e300",
            iss.token()
                .groups(&["a:devops"])
                .claim("iat", json!(1e300))
                .sign(),
        ),
        (
            "exp i64::MIN",
            iss.token()
                .groups(&["a:devops"])
                .claim("exp", json!(i64::MIN))
                .sign(),
        ),
    ];
    for (what, token) in refused {
        let (code, _, _) = p.get("/a/api/v1/pods", Some(&token)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{what}");
    }
}

/// `--authentication-config`: two issuers with their own rules in one file, tokens routed by
/// `iss`, claim and user rules refusing tokens, a token of an issuer not in the file costing no
/// fetch, and the file re-read (a broken edit keeping the issuers in force).
#[tokio::test]
async fn an_authentication_config_trusts_several_issuers_with_their_own_rules() {
    let people = issuer().path("/realms/people").run().await;
    let robots = issuer().path("/realms/robots").client_id("ci").run().await;
    let stranger = issuer().path("/realms/other").run().await;
    let a = apiserver().name("a").run().await;
    let indent = |pem: String| pem.lines().map(|l| format!("      {l}\n")).collect::<String>();
    let config = |robot_groups: &str, with_people: bool| {
        let people_entry = format!(
            "- issuer:
    url: {}
    audiences: [kube]
    certificateAuthority: |
{}  claimValidationRules:
  - claim: hd
    requiredValue: example.com
  claimMappings:
    username:
      claim: email
      prefix: ''
    groups:
      claim: groups
      prefix: ''
",
            people.url(),
            indent(people.ca_pem())
        );
        format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
{}- issuer:
    url: {}
    audiences: [ci, other]
    audienceMatchPolicy: MatchAny
    certificateAuthority: |
{}  claimValidationRules:
  - expression: 'claims.repository.startsWith(\"org/\")'
    message: only the org's repositories
  claimMappings:
    username:
      expression: '\"robot:\" + claims.sub'
    groups:
      expression: '{robot_groups}'
    uid:
      claim: sub
    extra:
    - key: example.com/repository
      valueExpression: claims.repository
  userValidationRules:
  - expression: \"!user.username.startsWith('robot:evil')\"
    message: no evil robots
",
            if with_people { people_entry } else { String::new() },
            robots.url(),
            indent(robots.ca_pem())
        )
    };
    let p = proxy(&people)
        .authentication_config(&config("[\"a:devops\"]", true))
        .arg("--impersonate-upstream")
        .arg("--config-reload-interval=100ms")
        .cluster("a", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    let person = people
        .token()
        .email("ann@example.com", Some(true))
        .groups(&["a:devops"])
        .claim("hd", json!("example.com"))
        .sign();
    let robot = robots
        .token()
        .sub("ci-1")
        .aud("other")
        .claim("repository", json!("org/app"))
        .sign();

    assert_eq!(p.get("/a/api/v1/pods", Some(&person)).await.0, StatusCode::OK);
    assert_eq!(a.last().header("impersonate-user"), Some("ann@example.com"));
    assert_eq!(p.get("/a/api/v1/pods", Some(&robot)).await.0, StatusCode::OK);
    let last = a.last();
    assert_eq!(last.header("impersonate-user"), Some("robot:ci-1"));
    assert_eq!(last.header("impersonate-uid"), Some("ci-1"));
    assert_eq!(
        last.header("impersonate-extra-example.com%2frepository"),
        Some("org/app")
    );

    let refused = [
        (
            "a person without the required claim",
            people
                .token()
                .email("bob@example.com", Some(true))
                .groups(&["a:devops"])
                .sign(),
        ),
        (
            "a robot of another organisation (claim rule)",
            robots
                .token()
                .sub("ci-2")
                .claim("repository", json!("them/app"))
                .sign(),
        ),
        (
            "an evil robot (user rule)",
            robots
                .token()
                .sub("evil-1")
                .claim("repository", json!("org/app"))
                .sign(),
        ),
        (
            "a robot token for no configured audience",
            robots
                .token()
                .sub("ci-3")
                .aud("kube")
                .claim("repository", json!("org/app"))
                .sign(),
        ),
        (
            "a person's token carrying the robots' issuer",
            people
                .token()
                .iss(&robots.url())
                .email("ann@example.com", Some(true))
                .sign(),
        ),
        (
            "an issuer not in the file",
            stranger.token().groups(&["a:devops"]).sign(),
        ),
        (
            "a robot token whose claims outweigh the CEL bound",
            robots
                .token()
                .sub("ci-4")
                .aud("other")
                .claim("repository", json!("org/app"))
                .claim("padding", json!("x".repeat(40 * 1024)))
                .sign(),
        ),
    ];
    for (what, token) in &refused {
        assert_eq!(
            p.get("/a/api/v1/pods", Some(token)).await.0,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    assert_eq!(
        stranger.jwks_fetches() + stranger.discovery_fetches(),
        0,
        "an unknown issuer costs no fetch"
    );
    let metrics = p.probe_text("/metrics").await;
    for line in [
        format!("kop_issuer_ready{{issuer=\"{}\"}} 1", people.url()),
        format!(
            "kop_issuer_tokens_accepted_total{{issuer=\"{}\"}} 1",
            robots.url()
        ),
        // Four refused by the robots' rules and bounds, one (the person's token) by their keys.
        format!("kop_issuer_tokens_refused_total{{issuer=\"{}\"}} 5", robots.url()),
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line} in\n{metrics}");
    }

    // A claim the token's issuer let its holder shape (a repository name with a line break)
    // is mapped into an extra that goes upstream as a header: it is refused before anything
    // reaches the cluster, never split into headers of the holder's choosing.
    let before = a.user_requests().len();
    let shaped = robots
        .token()
        .sub("ci-5")
        .aud("other")
        .claim(
            "repository",
            json!("org/app\r\nImpersonate-Group: system:masters"),
        )
        .sign();
    assert_eq!(
        p.get("/a/api/v1/pods", Some(&shaped)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(a.user_requests().len(), before, "nothing reached the cluster");

    // Connections that keep their last token's user (the proxy's per-connection memo): after
    // each change below, they must be answered under the new rules too.
    let mut kept_robot = p.conn().await;
    let mut kept_person = p.conn().await;
    let robot_auth = format!("Bearer {robot}");
    let person_auth = format!("Bearer {person}");
    for (conn, auth) in [(&mut kept_robot, &robot_auth), (&mut kept_person, &person_auth)] {
        let resp = conn
            .get("/a/api/v1/pods", &[("authorization", auth)])
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let _ = support::client::collect(resp.into_body()).await;
    }

    // The robots lose their group: the cached robot is mapped again under the new rules.
    let path = p.dir.path().join("authn.yaml");
    std::fs::write(&path, config("[]", true)).unwrap();
    let mut code = StatusCode::OK;
    for _ in 0..100 {
        code = p.get("/a/api/v1/pods", Some(&robot)).await.0;
        // The changed issuer keeps the keys it had: its tokens are never refused meanwhile.
        assert_ne!(
            code,
            StatusCode::UNAUTHORIZED,
            "a reload never costs a valid token a 401"
        );
        if code == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "the new mapping applies to a cached token"
    );
    let resp = kept_robot
        .get("/a/api/v1/pods", &[("authorization", &robot_auth)])
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "and to the connection that kept it"
    );
    assert_eq!(p.get("/a/api/v1/pods", Some(&person)).await.0, StatusCode::OK);
    let fetches = people.jwks_fetches();

    // A broken edit keeps what is in force.
    std::fs::write(&path, config("claims.", true)).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.get("/a/api/v1/pods", Some(&person)).await.0, StatusCode::OK);
    assert_eq!(
        people.jwks_fetches(),
        fetches,
        "an unchanged issuer keeps its keys"
    );

    // The people's issuer leaves the file: its tokens stop working.
    std::fs::write(&path, config("[]", false)).unwrap();
    let mut code = StatusCode::OK;
    for _ in 0..100 {
        code = p.get("/a/api/v1/pods", Some(&person)).await.0;
        if code == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        code,
        StatusCode::UNAUTHORIZED,
        "a removed issuer is no longer trusted"
    );
    let resp = kept_person
        .get("/a/api/v1/pods", &[("authorization", &person_auth)])
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "not even on a connection that kept it"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn a_broken_authentication_config_stops_start_up_naming_file_line_and_field() {
    let dir = support::TempDir::new("kop-authn-config");
    let path = dir.write(
        "authn.yaml",
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: http://kc.example.com\n    audiences: [kube]\n  claimMappings:\n    username:\n      claim: sub\n",
    );
    let args = <kube_oidc_proxy::cli::Args as clap::Parser>::try_parse_from([
        "kube-oidc-proxy",
        "--tls-cert-file=c",
        "--tls-private-key-file=k",
        &format!("--authentication-config={}", path.display()),
    ])
    .unwrap();
    let err = match kube_oidc_proxy::start(args).await {
        Ok(_) => panic!("a broken file must stop start-up"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!(
            "{}:5: jwt[0].issuer.url: URL scheme must be https",
            path.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("jwt[0].claimMappings.username.prefix: prefix is required"),
        "{err}"
    );
}
