//! The management cluster: clusters from the kubeconfigs Secret and grants from the role
//! resources, with a fake API server in the management role (lists, watches with resume,
//! 410 Gone and relist) and fake API servers as the clusters.

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::TempDir;
use support::apiserver::{FakeApi, apiserver};
use support::issuer::{Issuer, issuer};
use support::objects::{SECRET_NAMESPACE, capi, cluster_role, kubeconfigs_secret, namespace};
use support::proxy::{Cred, TestProxy, kubeconfig, proxy};

const SECRET: &str = "kube-oidc-proxy-kubeconfigs";

struct Ring {
    iss: Issuer,
    mgmt: FakeApi,
    a: FakeApi,
    b: FakeApi,
    p: TestProxy,
    _dir: TempDir,
}

/// A proxy whose management cluster is `mgmt`, with `file_clusters` in its clusters file
/// (served by `a`), and two fake clusters `a` and `b` to point Secret keys at.
async fn ring(file_clusters: &[&str], extra: &[&str]) -> Ring {
    let iss = issuer().run().await;
    let mgmt = apiserver()
        .name("mgmt")
        .require_bearer(Some("mgmt-token"))
        .run()
        .await;
    let a = apiserver().name("a").run().await;
    let b = apiserver().name("b").run().await;
    for api in [&a, &b] {
        api.store().put("namespaces", namespace("dev"));
        api.store().put(
            "clusterroles",
            cluster_role(
                "reader",
                json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
            ),
        );
    }
    let dir = TempDir::new("kop-mgmt");
    let mgmt_kc = dir.write(
        "mgmt.kubeconfig",
        &kubeconfig(&mgmt.url(), &mgmt.ca_pem(), &Cred::Token("mgmt-token".into())),
    );
    let mut builder = proxy(&iss).arg(&format!("--management-kubeconfig={}", mgmt_kc.display()));
    for name in file_clusters {
        builder = builder.cluster(name, &a, "", Cred::Token("t".into()));
    }
    for arg in extra {
        builder = builder.arg(arg);
    }
    let p = builder.no_wait().run().await;
    Ring {
        iss,
        mgmt,
        a,
        b,
        p,
        _dir: dir,
    }
}

fn kc(api: &FakeApi) -> String {
    kubeconfig(&api.url(), &api.ca_pem(), &Cred::Token("t".into()))
}

impl Ring {
    fn put_secret(&self, data: &[(&str, &str)]) {
        self.mgmt.store().put("secrets", kubeconfigs_secret(SECRET, data));
    }

    /// Which fake API server answers `/<cluster>/version` through the proxy, or the status.
    async fn served_by(&self, cluster: &str) -> Result<String, StatusCode> {
        let t = self
            .iss
            .token()
            .sub("ann")
            .groups(&[&format!("{cluster}:devops")])
            .sign();
        let (code, _, body) = self
            .p
            .get(&format!("/{cluster}/api/v1/namespaces/dev/configmaps"), Some(&t))
            .await;
        if code != StatusCode::OK {
            return Err(code);
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(v["server"].as_str().unwrap_or_default().to_string())
    }

    async fn wait_served_by(&self, cluster: &str, want: Result<&str, StatusCode>) {
        let mut last = Err(StatusCode::IM_A_TEAPOT);
        for _ in 0..200 {
            last = self.served_by(cluster).await;
            if last.as_deref().map_err(|c| *c) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("/{cluster}: wanted {want:?}, last got {last:?}");
    }

    /// `/clusters`' entry for `cluster` once it reports an error (or the last one seen).
    async fn status_with_error(&self, cluster: &str) -> Value {
        let mut status = Value::Null;
        for _ in 0..200 {
            status = self.status_of(cluster).await;
            if status["lastError"].is_string() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        status
    }

    async fn status_of(&self, cluster: &str) -> Value {
        let status = self.p.probe_json("/clusters").await;
        status["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == cluster).cloned())
            .unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn secret_keys_add_change_and_remove_clusters() {
    let r = ring(&[], &[]).await;
    // No Secret yet: the proxy serves (ready, nothing to wait for) and knows no cluster.
    r.p.wait_ready().await;
    assert_eq!(r.served_by("edge").await, Err(StatusCode::NOT_FOUND));

    r.put_secret(&[("edge", &kc(&r.a))]);
    r.wait_served_by("edge", Ok("a")).await;
    let status = r.status_of("edge").await;
    assert_eq!(status["source"], "secret", "{status}");
    assert_eq!(status["serving"], true);

    // A new value rebuilds the cluster: requests reach the new server.
    r.put_secret(&[("edge", &kc(&r.b))]);
    r.wait_served_by("edge", Ok("b")).await;

    // A broken value is reported; the previous version keeps serving.
    r.put_secret(&[("edge", "clusters: [not, a, kubeconfig")]);
    let status = r.status_with_error("edge").await;
    assert!(
        status["lastError"].as_str().unwrap().contains("not valid YAML"),
        "{status}"
    );
    assert_eq!(r.served_by("edge").await.as_deref(), Ok("b"));

    // A value that parses but whose server never answers cannot sync its RBAC: it never takes
    // over, and the previous version serves throughout (no 503 while it tries).
    r.put_secret(&[("edge", &kc(&r.a).replace(&r.a.url(), "https://127.0.0.1:9"))]);
    for _ in 0..20 {
        assert_eq!(r.served_by("edge").await.as_deref(), Ok("b"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A good value then takes over from it.
    r.put_secret(&[("edge", &kc(&r.a))]);
    r.wait_served_by("edge", Ok("a")).await;
    r.put_secret(&[("edge", &kc(&r.b))]);
    r.wait_served_by("edge", Ok("b")).await;

    // A second key adds a second cluster; removing the first removes only it.
    r.put_secret(&[("edge", &kc(&r.b)), ("edge2", &kc(&r.a))]);
    r.wait_served_by("edge2", Ok("a")).await;
    r.put_secret(&[("edge2", &kc(&r.a))]);
    r.wait_served_by("edge", Err(StatusCode::NOT_FOUND)).await;
    assert_eq!(r.served_by("edge2").await.as_deref(), Ok("a"));

    // Deleting the Secret removes every cluster it held (the Go proxy re-added them).
    r.mgmt.store().delete("secrets", SECRET_NAMESPACE, SECRET);
    r.wait_served_by("edge2", Err(StatusCode::NOT_FOUND)).await;
    assert_eq!(r.status_of("edge2").await, Value::Null);
    // Only the one Secret is ever read.
    assert!(
        r.mgmt
            .requests()
            .iter()
            .filter(|q| q.uri.contains("/secrets"))
            .all(|q| q
                .uri
                .contains("fieldSelector=metadata.name%3Dkube-oidc-proxy-kubeconfigs")),
        "every Secret request carries the field selector"
    );
}

/// A watch and an exec session through `edge`, as (the watch's body, the exec's upgraded IO).
async fn open_streams(
    r: &Ring,
    cluster: &str,
) -> (
    hyper::body::Incoming,
    hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
) {
    let t = r
        .iss
        .token()
        .sub("ann")
        .groups(&[&format!("{cluster}:devops")])
        .sign();
    let mut conn = r.p.conn().await;
    let resp = conn
        .get(
            &format!("/{cluster}/api/v1/namespaces/dev/configmaps?watch=true"),
            &[("authorization", &format!("Bearer {t}"))],
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let watch = resp.into_body();
    let mut conn = r.p.conn().await;
    let req = http::Request::post(format!(
        "/{cluster}/api/v1/namespaces/dev/pods/web/exec?command=sh"
    ))
    .header("authorization", format!("Bearer {t}"))
    .header("connection", "Upgrade")
    .header("upgrade", "SPDY/3.1")
    .header("x-stream-protocol-version", "v4.channel.k8s.io")
    .body(support::full(bytes::Bytes::new()))
    .unwrap();
    let mut resp = conn.send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let io = hyper_util::rt::TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    (watch, io)
}

/// Both streams still work now, and end within `secs` once `change` is made.
async fn streams_end_after(
    (mut watch, mut io): (
        hyper::body::Incoming,
        hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    ),
    secs: u64,
    change: impl std::future::Future<Output = ()>,
) {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    io.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping", "the exec session works before the change");
    change.await;
    let wait = Duration::from_secs(secs);
    let rest = tokio::time::timeout(wait, async {
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.map(|_| rest)
    })
    .await;
    assert!(rest.is_ok(), "the exec session ended within {secs}s");
    let ended = tokio::time::timeout(wait, async {
        while let Some(frame) = watch.frame().await {
            if frame.is_err() {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(ended, Ok(true), "the watch ended cleanly within {secs}s");
}

/// Removing a cluster, or changing its credentials, ends every stream opened through it: the
/// streams must not outlive the credentials they were opened with.
#[tokio::test]
async fn a_removed_or_replaced_cluster_ends_its_streams() {
    let r = ring(&[], &[]).await;
    r.p.wait_ready().await;
    r.put_secret(&[("edge", &kc(&r.a)), ("other", &kc(&r.b))]);
    r.wait_served_by("edge", Ok("a")).await;
    r.wait_served_by("other", Ok("b")).await;

    // A credential change: the new version takes over, the old one's streams end.
    let streams = open_streams(&r, "edge").await;
    let untouched = open_streams(&r, "other").await;
    streams_end_after(streams, 5, async {
        r.put_secret(&[("edge", &kc(&r.b)), ("other", &kc(&r.b))]);
        r.wait_served_by("edge", Ok("b")).await;
    })
    .await;

    // A removal.
    let streams = open_streams(&r, "edge").await;
    streams_end_after(streams, 5, async {
        r.put_secret(&[("other", &kc(&r.b))]);
        r.wait_served_by("edge", Err(StatusCode::NOT_FOUND)).await;
    })
    .await;

    // The other cluster's streams were never touched.
    let (mut watch, mut io) = untouched;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        io.write_all(b"still").await.unwrap();
        let mut back = [0u8; 5];
        io.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"still");
    }
    let next = tokio::time::timeout(
        Duration::from_millis(300),
        http_body_util::BodyExt::frame(&mut watch),
    )
    .await;
    assert!(next.is_err(), "the other cluster's watch is still open");
}

/// A Secret key named like a Kubernetes path root is reported and skipped: with host routing
/// it would otherwise capture the first segment of every host-style request (`/api/...`).
#[tokio::test]
async fn a_cluster_named_like_a_path_root_is_refused_and_host_routing_still_works() {
    let r = ring(&[], &["--cluster-host-suffix=.kop.test"]).await;
    r.p.wait_ready().await;
    r.put_secret(&[("api", &kc(&r.b)), ("edge", &kc(&r.a))]);
    r.wait_served_by("edge", Ok("a")).await;
    let status = r.status_with_error("api").await;
    assert_eq!(status["serving"], false, "{status}");
    assert!(
        status["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("\"api\" is reserved"),
        "{status}"
    );
    // Host-style: the whole path is edge's Kubernetes path.
    let t = r.iss.token().sub("ann").groups(&["edge:devops"]).sign();
    let mut conn = r.p.conn().await;
    let resp = conn
        .get(
            "/api/v1/namespaces/dev/configmaps",
            &[
                ("authorization", &format!("Bearer {t}")),
                ("host", "edge.kop.test"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&support::client::collect(resp.into_body()).await).unwrap();
    assert_eq!(body["server"], "a", "{body}");
}

/// Nothing of a kubeconfig that could be a credential reaches the unauthenticated `/clusters`
/// page: not a password in the server URL, not an exec plugin's environment, input or output.
#[tokio::test]
async fn clusters_shows_no_credential_of_a_kubeconfig() {
    let iss = issuer().run().await;
    let a = apiserver().name("a").run().await;
    let server = a.url().replace("https://", "https://admin:hunter2@");
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, a.ca_pem());
    let kubeconfig = format!(
        r#"apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}", certificate-authority-data: "{ca}"}}}}]
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: sh
      args: ["-c", "echo stdout-token-xyz; echo plugin says no >&2; exit 3"]
      env: [{{name: AWS_SECRET_ACCESS_KEY, value: s3cr3t-env}}]
      interactiveMode: Never
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
"#
    );
    let with_password = format!(
        r#"apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}", certificate-authority-data: "{ca}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
"#
    );
    let p = proxy(&iss)
        .raw_cluster("plug", &kubeconfig)
        .raw_cluster("pw", &with_password)
        .no_wait()
        .run()
        .await;
    let mut status = Value::Null;
    for _ in 0..200 {
        status = p.probe_json("/clusters").await;
        let failed = status["clusters"][0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("exec plugin"));
        if failed && status["clusters"][1]["serving"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (entry, pw) = (&status["clusters"][0], &status["clusters"][1]);
    assert_eq!(
        (entry["name"].as_str(), pw["name"].as_str()),
        (Some("plug"), Some("pw"))
    );
    let shown = status.to_string();
    let error = entry["lastError"].as_str().unwrap_or("");
    assert!(
        error.contains(r#"exec plugin "sh" failed with exit code 3: stderr: plugin says no"#),
        "{shown}"
    );
    assert_eq!(
        pw["server"].as_str().unwrap_or("").trim_end_matches('/'),
        a.url().trim_end_matches('/'),
        "{shown}"
    );
    for secret in [
        "hunter2",
        "s3cr3t-env",
        "stdout-token-xyz",
        "KUBERNETES_EXEC_INFO",
    ] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
}

/// An API server that goes away ends the streams through it too (the proxy holds nothing open).
#[tokio::test]
async fn an_api_server_that_stops_ends_its_streams() {
    let r = ring(&[], &[]).await;
    r.p.wait_ready().await;
    r.put_secret(&[("edge", &kc(&r.a))]);
    r.wait_served_by("edge", Ok("a")).await;
    let streams = open_streams(&r, "edge").await;
    streams_end_after(streams, 5, async { r.a.shutdown() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_file_wins_and_a_secret_may_not_run_commands() {
    let r = ring(&["k8s"], &[]).await;
    r.p.wait_ready().await;
    let exec = kc(&r.b).replace(
        "    token: t\n",
        &format!(
            "    exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/touch, args: [{}/pwned]}}\n",
            r._dir.path().display()
        ),
    );
    r.put_secret(&[("k8s", &kc(&r.b)), ("robot", &exec), ("edge", &kc(&r.b))]);
    r.wait_served_by("edge", Ok("b")).await;
    // The file's k8s (server a) is still served, and the collision is logged with its status.
    assert_eq!(r.served_by("k8s").await.as_deref(), Ok("a"));
    let k8s = r.status_of("k8s").await;
    assert_eq!(k8s["source"], "file", "{k8s}");
    // The exec kubeconfig was refused before anything ran.
    let robot = r.status_of("robot").await;
    assert_eq!(robot["serving"], false, "{robot}");
    assert!(
        robot["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("exec credential plugin"),
        "{robot}"
    );
    assert!(!r._dir.path().join("pwned").exists(), "the exec plugin never ran");
    assert_eq!(r.served_by("robot").await, Err(StatusCode::NOT_FOUND));
}

#[tokio::test]
async fn role_resources_grant_and_revoke_per_target_cluster() {
    let r = ring(&["k8s"], &[]).await;
    r.p.wait_ready().await;
    r.put_secret(&[("edge", &kc(&r.b))]);
    r.wait_served_by("edge", Ok("b")).await;
    let t = r.iss.token().sub("carl").groups(&["platform"]).sign();
    let path = |c: &str| format!("/{c}/api/v1/namespaces/dev/configmaps");
    assert_eq!(r.p.get(&path("edge"), Some(&t)).await.0, StatusCode::FORBIDDEN);

    // The CRDs are not installed: reported, retried, and installing them later works.
    r.mgmt.store().install_crds();
    r.mgmt.store().put(
        "capiclusterrolebindings",
        capi(
            "CAPIClusterRoleBinding",
            None,
            "platform-readers",
            json!({"roleRef": ["reader"], "subjects": [{"group": "platform"}], "targetClusters": ["edge"]}),
        ),
    );
    let eventually = |cluster: &'static str, want: StatusCode| {
        let (p, t) = (&r.p, t.clone());
        async move {
            for _ in 0..400 {
                if p.get(&path(cluster), Some(&t)).await.0 == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{cluster}: never {want}");
        }
    };
    eventually("edge", StatusCode::OK).await;
    assert_eq!(
        r.p.get(&path("k8s"), Some(&t)).await.0,
        StatusCode::FORBIDDEN,
        "k8s is not a target"
    );

    // "*" reaches every cluster, including k8s from the file.
    r.mgmt.store().put(
        "capiclusterrolebindings",
        capi(
            "CAPIClusterRoleBinding",
            None,
            "platform-readers",
            json!({"roleRef": ["reader"], "subjects": [{"group": "platform"}], "targetClusters": ["*"]}),
        ),
    );
    eventually("k8s", StatusCode::OK).await;

    // A namespaced pair: a CAPIRole in dev only, bound by a CAPIRoleBinding.
    let u = r.iss.token().sub("dana").groups(&["dev-team"]).sign();
    r.mgmt.store().put(
        "capiroles",
        capi(
            "CAPIRole",
            Some("mgmt"),
            "secret-reader",
            json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
                   "targetClusters": ["k8s"], "targetNamespaces": ["dev"]}),
        ),
    );
    r.mgmt.store().put(
        "capirolebindings",
        capi(
            "CAPIRoleBinding",
            Some("mgmt"),
            "dev-team",
            json!({"roleRef": ["secret-reader"], "subjects": [{"group": "dev-team"}],
                   "targetClusters": ["k8s"], "targetNamespaces": ["dev"]}),
        ),
    );
    let secret = "/k8s/api/v1/namespaces/dev/secrets/db";
    let mut code = StatusCode::IM_A_TEAPOT;
    for _ in 0..100 {
        code = r.p.get(secret, Some(&u)).await.0;
        if code == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        r.p.get("/k8s/api/v1/namespaces/prod/secrets/db", Some(&u))
            .await
            .0,
        StatusCode::FORBIDDEN,
        "only the target namespace"
    );

    // Deletions while the watch is down, then the history compacted: the proxy gets 410 Gone,
    // relists, and revokes exactly what the deleted resources made.
    let lists_before = r.mgmt.store().lists_of("capiclusterrolebindings");
    r.mgmt.store().close_watches();
    r.mgmt
        .store()
        .delete("capiclusterrolebindings", "", "platform-readers");
    r.mgmt.store().compact();
    eventually("edge", StatusCode::FORBIDDEN).await;
    eventually("k8s", StatusCode::FORBIDDEN).await;
    assert!(
        r.mgmt.store().lists_of("capiclusterrolebindings") > lists_before,
        "relisted after 410"
    );
    assert_eq!(
        r.p.get(secret, Some(&u)).await.0,
        StatusCode::OK,
        "the other resources stay"
    );
    let _ = &r.a;
}

#[tokio::test]
async fn the_clusters_file_is_reread_with_the_same_rules() {
    let r = ring(&["k8s"], &["--config-reload-interval=100ms"]).await;
    r.p.wait_ready().await;
    r.put_secret(&[("spare", &kc(&r.b))]);
    r.wait_served_by("spare", Ok("b")).await;
    let file = r.p.dir.path().join("clusters.yaml");
    let b_kc = r._dir.write("b.kubeconfig", &kc(&r.b));
    let a_kc = r.p.dir.path().join("k8s.kubeconfig");
    // k8s now points at b; "spare" moves from the Secret to the file (the file wins).
    std::fs::write(
        &file,
        format!(
            "clusters:\n- name: k8s\n  kubeconfig: {}\n- name: spare\n  kubeconfig: {}\n",
            b_kc.display(),
            a_kc.display()
        ),
    )
    .unwrap();
    r.wait_served_by("k8s", Ok("b")).await;
    r.wait_served_by("spare", Ok("a")).await;
    assert_eq!(r.status_of("spare").await["source"], "file");
    // A broken edit keeps everything as it was.
    std::fs::write(&file, "clusters: [").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.served_by("k8s").await.as_deref(), Ok("b"));
    // Dropping an entry removes it; the Secret's "spare" comes back.
    std::fs::write(
        &file,
        format!("clusters:\n- name: k8s\n  kubeconfig: {}\n", b_kc.display()),
    )
    .unwrap();
    r.wait_served_by("spare", Ok("b")).await;
    assert_eq!(r.status_of("spare").await["source"], "secret");
    assert_eq!(r.served_by("k8s").await.as_deref(), Ok("b"));
    // Emptying the file removes its clusters too (once it is still empty at the next check).
    std::fs::write(&file, "").unwrap();
    r.wait_served_by("k8s", Err(StatusCode::NOT_FOUND)).await;
    assert_eq!(r.served_by("spare").await.as_deref(), Ok("b"));
}

#[tokio::test]
async fn an_unreachable_management_cluster_never_holds_start_up_back() {
    let iss = issuer().run().await;
    let a = apiserver().name("a").run().await;
    let dir = TempDir::new("kop-mgmt-down");
    // A port nothing listens on (bound, then released).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mgmt_kc = dir.write(
        "mgmt.kubeconfig",
        &kubeconfig(
            &format!("https://{closed}"),
            &a.ca_pem(),
            &Cred::Token("x".into()),
        ),
    );
    let p = proxy(&iss)
        .arg(&format!("--management-kubeconfig={}", mgmt_kc.display()))
        .cluster("k8s", &a, "", Cred::Token("t".into()))
        .run()
        .await;
    // Ready and serving the file's cluster while the management cluster is down.
    let t = iss.token().sub("ann").groups(&["k8s:devops"]).sign();
    assert_eq!(
        p.get("/k8s/api/v1/namespaces/dev/configmaps", Some(&t)).await.0,
        StatusCode::OK
    );
    let mut status = Value::Null;
    for _ in 0..100 {
        status = p.probe_json("/clusters").await;
        if status["management"]["secretError"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = &status["management"];
    assert_eq!(m["secretSynced"], false, "{status}");
    let error = m["secretError"].as_str().unwrap_or("").to_lowercase();
    assert!(error.contains("connect"), "{status}");
    assert_eq!(m["secret"], "kube-oidc-proxy/kube-oidc-proxy-kubeconfigs");
}

#[tokio::test]
async fn a_secret_annotation_chooses_the_clusters_identity() {
    let annotated = |r: &Ring| {
        let mut secret = kubeconfigs_secret(SECRET, &[("edge", &kc(&r.a)), ("odd", &kc(&r.b))]);
        secret["metadata"]["annotations"] = json!({
            "identity.kube-oidc-proxy.io/edge": "passthrough-user-token",
            "identity.kube-oidc-proxy.io/odd": "root",
        });
        secret
    };
    // Whoever writes the Secret chooses the server: users' tokens go there only when allowed.
    let r = ring(&[], &[]).await;
    r.p.wait_ready().await;
    r.mgmt.store().put("secrets", annotated(&r));
    let edge = r.status_with_error("edge").await;
    assert_eq!(edge["serving"], false, "{edge}");
    assert!(
        edge["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("--allow-user-tokens-to-secret-clusters"),
        "{edge}"
    );

    let r = ring(&[], &["--allow-user-tokens-to-secret-clusters"]).await;
    r.p.wait_ready().await;
    r.mgmt.store().put("secrets", annotated(&r));
    r.wait_served_by("edge", Ok("a")).await;
    let t = r.iss.token().sub("ann").groups(&["edge:devops"]).sign();
    r.p.get("/edge/api/v1/namespaces/dev/configmaps", Some(&t)).await;
    assert_eq!(
        r.a.last().header("authorization"),
        Some(format!("Bearer {t}").as_str())
    );
    assert_eq!(r.status_of("edge").await["identity"], "passthrough-user-token");
    let odd = r.status_of("odd").await;
    assert_eq!(odd["serving"], false, "{odd}");
    assert!(
        odd["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("unknown identity \"root\""),
        "{odd}"
    );
}

#[tokio::test]
async fn a_broken_file_entry_takes_the_name_from_the_secret() {
    let r = ring(&[], &["--config-reload-interval=100ms"]).await;
    r.p.wait_ready().await;
    r.put_secret(&[("prod", &kc(&r.b))]);
    r.wait_served_by("prod", Ok("b")).await;
    // The file claims prod with a kubeconfig that cannot be read: the file wins, so the
    // Secret's prod stops serving (a credential rotated in the Secret must not live on).
    let file = r.p.dir.path().join("clusters.yaml");
    std::fs::write(
        &file,
        "clusters:\n- name: prod\n  kubeconfig: /nonexistent/prod.kubeconfig\n",
    )
    .unwrap();
    r.wait_served_by("prod", Err(StatusCode::NOT_FOUND)).await;
    let prod = r.status_of("prod").await;
    assert_eq!(prod["source"], "file", "{prod}");
    assert!(
        prod["lastError"].as_str().unwrap_or("").contains("cannot read"),
        "{prod}"
    );
}

/// Open file descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_add_change_remove_cycles_leak_nothing() {
    let r = ring(&[], &[]).await;
    r.p.wait_ready().await;
    // One cycle first, so lazily created pools and caches exist before counting.
    let cycle = |i: usize| {
        let r = &r;
        async move {
            r.put_secret(&[("edge", &kc(&r.a))]);
            r.wait_served_by("edge", Ok("a")).await;
            r.put_secret(&[("edge", &kc(&r.b))]);
            r.wait_served_by("edge", Ok("b")).await;
            r.mgmt.store().delete("secrets", SECRET_NAMESPACE, SECRET);
            r.wait_served_by("edge", Err(StatusCode::NOT_FOUND)).await;
            let _ = i;
        }
    };
    cycle(0).await;
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    settle().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let (tasks_before, fds_before) = (metrics.num_alive_tasks(), fds());
    for i in 1..=100 {
        cycle(i).await;
    }
    // Closed connections and stopped watches finish within a moment.
    let mut after = (0, 0);
    for _ in 0..50 {
        settle().await;
        after = (metrics.num_alive_tasks(), fds());
        if after.0 <= tasks_before + 2 && after.1 <= fds_before + 4 {
            break;
        }
    }
    println!(
        "100 cycles: tasks {tasks_before} -> {}, fds {fds_before} -> {}",
        after.0, after.1
    );
    assert!(
        after.0 <= tasks_before + 2,
        "tasks grew from {tasks_before} to {}",
        after.0
    );
    assert!(
        after.1 <= fds_before + 4,
        "fds grew from {fds_before} to {}",
        after.1
    );
}
