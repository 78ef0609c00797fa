use serde_json::json;

use super::*;
use crate::authz::default_roles::default_role_objects;
use crate::authz::rbac::{
    ClusterRole, ClusterRoleBinding, ObjectMeta, RbacObjects, Role, RoleBinding, RoleRef, RoleRefKind,
    Subject, SubjectKind,
};

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule::resource(verbs, groups, resources, names)
}

/// One ClusterRole granted to one user, in namespace `ns` (empty: cluster-wide).
fn one_grant(user: &str, ns: &str, role: &str, rules: Vec<PolicyRule>) -> Snapshot {
    let role_ref = RoleRef {
        api_group: RBAC.into(),
        kind: RoleRefKind::ClusterRole,
        name: role.into(),
    };
    let mut objects = RbacObjects {
        cluster_roles: vec![ClusterRole {
            metadata: meta("", role),
            rules,
        }],
        ..RbacObjects::default()
    };
    if ns.is_empty() {
        objects.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: meta("", user),
            role_ref,
            subjects: vec![user_subject(user)],
        });
    } else {
        objects.role_bindings.push(RoleBinding {
            metadata: meta(ns, user),
            role_ref,
            subjects: vec![user_subject(user)],
        });
    }
    Snapshot::build(&objects)
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: ns.into(),
        cluster_name: String::new(),
    }
}

fn user_subject(name: &str) -> Subject {
    Subject {
        kind: SubjectKind::User,
        api_group: RBAC.into(),
        name: name.into(),
        namespace: String::new(),
    }
}

/// ann may write roles and bindings in dev and holds `pods` read there; bob may also `bind`
/// the ClusterRole `view`; cara may `escalate` roles in dev; dora holds everything.
fn snapshot() -> Snapshot {
    let writer = rule(
        &["create", "update", "patch", "get"],
        &[RBAC],
        &["roles", "rolebindings", "clusterroles", "clusterrolebindings"],
        &[],
    );
    let mut objects = RbacObjects {
        cluster_roles: vec![
            ClusterRole {
                metadata: meta("", "view"),
                rules: vec![rule(
                    &["get", "list", "watch"],
                    &[""],
                    &["pods", "configmaps"],
                    &[],
                )],
            },
            ClusterRole {
                metadata: meta("", "cluster-admin"),
                rules: full_authority(),
            },
            ClusterRole {
                metadata: meta("", "rbac-writer"),
                rules: vec![writer],
            },
            ClusterRole {
                metadata: meta("", "bind-view"),
                rules: vec![rule(&["bind"], &[RBAC], &["clusterroles"], &["view"])],
            },
            ClusterRole {
                metadata: meta("", "escalate-roles"),
                rules: vec![rule(&["escalate"], &[RBAC], &["roles"], &[])],
            },
            ClusterRole {
                metadata: meta("", "csr"),
                rules: vec![rule(
                    &["create", "update", "patch"],
                    &[CERTIFICATES],
                    &[
                        "certificatesigningrequests",
                        "certificatesigningrequests/approval",
                    ],
                    &[],
                )],
            },
        ],
        roles: vec![Role {
            metadata: meta("dev", "pod-reader"),
            rules: vec![rule(&["get"], &[""], &["pods"], &[])],
        }],
        role_bindings: Vec::new(),
        cluster_role_bindings: vec![ClusterRoleBinding {
            metadata: meta("", "dora-admin"),
            role_ref: RoleRef {
                api_group: RBAC.into(),
                kind: RoleRefKind::ClusterRole,
                name: "cluster-admin".into(),
            },
            subjects: vec![user_subject("dora")],
        }],
    };
    let bind = |user: &str, role: &str| RoleBinding {
        metadata: meta("dev", &format!("{user}-{role}")),
        role_ref: RoleRef {
            api_group: RBAC.into(),
            kind: RoleRefKind::ClusterRole,
            name: role.into(),
        },
        subjects: vec![user_subject(user)],
    };
    for user in ["ann", "bob", "cara"] {
        objects.role_bindings.push(bind(user, "rbac-writer"));
        objects.role_bindings.push(bind(user, "csr"));
        objects.role_bindings.push(RoleBinding {
            role_ref: RoleRef {
                api_group: RBAC.into(),
                kind: RoleRefKind::Role,
                name: "pod-reader".into(),
            },
            ..bind(user, "pod-reader")
        });
    }
    objects.role_bindings.push(bind("bob", "bind-view"));
    objects.role_bindings.push(bind("cara", "escalate-roles"));
    // The built-in roles are the proxy's, not the cluster's.
    let defaults = default_role_objects("k8s", &["dev"]);
    crate::authz::rbac::SnapshotBuilder::new()
        .add_cluster_objects(&objects)
        .add_objects(&defaults)
        .build()
}

fn info(method: &str, path: &str) -> RequestInfo {
    RequestInfo::parse(method, path, None, false).expect("request info")
}

fn who(name: &str) -> Requester<'_> {
    Requester { name, groups: &[] }
}

const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles";
const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings";

fn run(
    method: &str,
    path: &str,
    ct: Option<&str>,
    user: &str,
    created: bool,
    object: Value,
) -> Result<(), Refused> {
    let snap = snapshot();
    let info = info(method, path);
    match plan(&info, ct.map(str::as_bytes), who(user), &snap)? {
        None => Ok(()),
        Some(p) => check(&p, &info, created, &object, who(user), &snap),
    }
}

/// A RoleBinding in dev to `kind`/`role`, created by `user`.
fn bind(user: &str, kind: &str, role: &str) -> Result<(), Refused> {
    run("POST", BINDINGS, None, user, true, binding_to(kind, role))
}

fn role_with(rules: Value) -> Value {
    json!({"kind": "Role", "metadata": {"name": "r", "namespace": "dev"}, "rules": rules})
}

fn binding_to(kind: &str, name: &str) -> Value {
    json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "dev"},
           "roleRef": {"apiGroup": RBAC, "kind": kind, "name": name},
           "subjects": [{"kind": "User", "name": "mallory"}]})
}

#[test]
fn roles_grant_only_what_the_writer_holds() {
    let held = role_with(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]));
    assert_eq!(run("POST", ROLES, None, "ann", true, held.clone()), Ok(()));
    assert_eq!(
        run("PUT", &format!("{ROLES}/r"), None, "ann", false, held),
        Ok(())
    );
    let secrets = role_with(json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]));
    let err = run("POST", ROLES, None, "ann", true, secrets.clone()).unwrap_err();
    assert_eq!(
        err.message,
        "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"ann\" (groups=[]) is attempting \
         to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    assert_eq!((err.kind.as_str(), err.name.as_str()), ("roles", "r"));
    // Patches and applies are judged on their result, whatever the patch looked like.
    let apply = Some("application/apply-patch+yaml");
    assert!(
        run(
            "PATCH",
            &format!("{ROLES}/r"),
            apply,
            "ann",
            false,
            secrets.clone()
        )
        .is_err()
    );
    assert!(
        run(
            "PATCH",
            &format!("{ROLES}/r"),
            Some("application/merge-patch+json"),
            "ann",
            false,
            secrets.clone()
        )
        .is_err()
    );
    // `escalate` on roles lifts the check, as in kube-apiserver; dora holds everything.
    assert_eq!(run("POST", ROLES, None, "cara", true, secrets.clone()), Ok(()));
    assert_eq!(run("POST", ROLES, None, "dora", true, secrets), Ok(()));
}

#[test]
fn cluster_roles_use_cluster_wide_rules_and_guard_aggregation() {
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    let pods = json!({"metadata": {"name": "c"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    // ann holds pods/get in dev only: that does not cover a ClusterRole (and she may not
    // create ClusterRoles anyway outside a namespace: the request line would be denied first).
    assert!(run("POST", path, None, "ann", true, pods.clone()).is_err());
    assert_eq!(run("POST", path, None, "dora", true, pods), Ok(()));
    let aggregated = json!({"metadata": {"name": "agg"}, "rules": [],
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}});
    let snap = snapshot();
    let req = info("POST", path);
    let p = WritePlan {
        content: Some(Content::ClusterRole),
        refuse_create: false,
    };
    let groups = ["k8s:watcher".to_string()];
    let watcher = Requester {
        name: "wes",
        groups: &groups,
    };
    let err = check(&p, &req, true, &aggregated, watcher, &snap).unwrap_err();
    assert!(
        err.message
            .ends_with("must have cluster-admin privileges to use the aggregationRule"),
        "{}",
        err.message
    );
    assert_eq!(check(&p, &req, true, &aggregated, who("dora"), &snap), Ok(()));
}

#[test]
fn bindings_need_bind_or_the_roles_rules() {
    // ann holds pods/get in dev: binding the Role pod-reader is fine, binding view is not.
    assert_eq!(bind("ann", "Role", "pod-reader"), Ok(()));
    let err = bind("ann", "ClusterRole", "view").unwrap_err();
    assert!(
        err.message
            .starts_with("rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"ann\""),
        "{}",
        err.message
    );
    assert!(bind("ann", "ClusterRole", "cluster-admin").is_err());
    // bob may bind view by name, and nothing else.
    assert_eq!(bind("bob", "ClusterRole", "view"), Ok(()));
    assert!(bind("bob", "ClusterRole", "cluster-admin").is_err());
    // A role nobody defines: kube-apiserver's "not found".
    let err = bind("ann", "ClusterRole", "ghost").unwrap_err();
    assert!(
        err.message
            .ends_with("clusterrole.rbac.authorization.k8s.io \"ghost\" not found"),
        "{}",
        err.message
    );
    // The proxy's built-in roles are roles too: binding k8s:devops in the cluster would grant it
    // through the proxy, so it is checked like any other.
    assert!(bind("ann", "ClusterRole", "k8s:devops").is_err());
    assert_eq!(bind("dora", "ClusterRole", "k8s:devops"), Ok(()));
    let crb = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    let obj = json!({"metadata": {"name": "x"}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "pod-reader"}});
    assert!(
        run("POST", crb, None, "dora", true, obj).is_err(),
        "a ClusterRoleBinding cannot name a Role"
    );
}

#[test]
fn writes_that_would_create_need_create() {
    // wes may update and patch configmaps, never create them.
    let snap = one_grant(
        "wes",
        "dev",
        "cm-editor",
        vec![rule(&["get", "update", "patch"], &[""], &["configmaps"], &[])],
    );
    let path = "/api/v1/namespaces/dev/configmaps/app";
    let cm = json!({"metadata": {"name": "app"}});
    let apply = Some(&b"application/apply-patch+yaml"[..]);
    let merge = Some(&b"application/merge-patch+json"[..]);
    // Not ASCII, a case kube-apiserver does not accept, a parameter: may create, so checked.
    let odd: [&[u8]; 4] = [
        b"application/apply-patch+yaml; x=\"\xe9\"",
        b"Application/Merge-Patch+json",
        b"application/apply-patch+cbor",
        b";application/merge-patch+json",
    ];
    for ct in odd {
        assert!(patch_may_create(Some(ct)), "{ct:?}");
    }
    assert!(!patch_may_create(Some(
        b"application/merge-patch+json; charset=utf-8"
    )));
    assert!(!patch_may_create(Some(b"application/strategic-merge-patch+json")));
    assert!(patch_may_create(None));
    for (method, ct) in [("PUT", None), ("PATCH", apply), ("PATCH", Some(odd[0]))] {
        let req = info(method, path);
        let p = plan(&req, ct, who("wes"), &snap)
            .unwrap()
            .expect("needs a dry run");
        assert!(p.refuse_create);
        assert_eq!(
            check(&p, &req, false, &cm, who("wes"), &snap),
            Ok(()),
            "{method} update"
        );
        let err = check(&p, &req, true, &cm, who("wes"), &snap).unwrap_err();
        assert_eq!(
            err.message,
            "configmaps \"app\" is forbidden: User \"wes\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"dev\""
        );
    }
    // A merge patch never creates; subresources are never created.
    assert_eq!(plan(&info("PATCH", path), merge, who("wes"), &snap), Ok(None));
    assert_eq!(
        plan(&info("PUT", &format!("{path}/status")), None, who("wes"), &snap),
        Ok(None)
    );
    // With create, no dry run at all.
    let snap = snapshot();
    assert_eq!(
        plan(
            &info("PUT", "/api/v1/namespaces/dev/pods/x"),
            None,
            who("dora"),
            &snap
        ),
        Ok(None)
    );
}

#[test]
fn certificate_requests_and_signers() {
    let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let snap = snapshot();
    // ann may create CSRs but lacks nodeclient: a kubelet-client CSR is refused however it is
    // created (POST, PUT, or apply), other signers pass.
    let kubelet = json!({"metadata": {"name": "n"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet"}});
    let other = json!({"metadata": {"name": "n"}, "spec": {"signerName": "example.com/x"}});
    let apply = Some(&b"application/apply-patch+yaml"[..]);
    let csr_snap = one_grant(
        "ann",
        "",
        "csr-writer",
        vec![rule(
            &["create", "update", "patch"],
            &[CERTIFICATES],
            &["certificatesigningrequests"],
            &[],
        )],
    );
    for (method, path, ct, created) in [
        ("POST", csrs.to_string(), None, true),
        ("PUT", format!("{csrs}/n"), None, true),
    ] {
        let req = info(method, &path);
        let p = plan(&req, ct, who("ann"), &csr_snap).unwrap().expect("checked");
        let err = check(&p, &req, created, &kubelet, who("ann"), &csr_snap).unwrap_err();
        assert!(
            err.message.contains("certificatesigningrequests/nodeclient"),
            "{}",
            err.message
        );
        assert_eq!(
            check(&p, &req, created, &other, who("ann"), &csr_snap),
            Ok(()),
            "{method}"
        );
    }
    // An apply to a CSR is refused outright without nodeclient: its dry run would show the old
    // signer of an existing CSR, and a delete before the real write would let it create.
    let req = info("PATCH", &format!("{csrs}/n"));
    let err = plan(&req, apply, who("ann"), &csr_snap).unwrap_err();
    assert!(err.message.contains("server-side apply"), "{}", err.message);
    assert!(plan(&req, Some(b"application/merge-patch+json"), who("ann"), &csr_snap).is_ok());
    // An update that creates nothing is fine; dora holds nodeclient and is never checked.
    let put = info("PUT", &format!("{csrs}/n"));
    let p = plan(&put, None, who("ann"), &csr_snap).unwrap().unwrap();
    assert_eq!(check(&p, &put, false, &kubelet, who("ann"), &csr_snap), Ok(()));
    assert_eq!(plan(&info("POST", csrs), None, who("dora"), &snap), Ok(None));

    let csr = json!({"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client"},
                     "status": {"certificate": "Zm9v"}});
    let approval = info("PUT", &format!("{csrs}/c/approval"));
    let p = plan(&approval, None, who("ann"), &snap).unwrap().unwrap();
    let err = check(&p, &approval, false, &csr, who("ann"), &snap).unwrap_err();
    assert!(err.message.ends_with(
        "user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""
    ));
    assert_eq!(check(&p, &approval, false, &csr, who("dora"), &snap), Ok(()));
    let status = info("PUT", &format!("{csrs}/c/status"));
    let p = plan(&status, None, who("ann"), &snap).unwrap().unwrap();
    assert!(check(&p, &status, false, &csr, who("ann"), &snap).is_err());
    // Every status write needs sign, conditions alone included.
    let unsigned = json!({"metadata": {"name": "c"}, "spec": {"signerName": "example.com/x"},
                          "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert!(check(&p, &status, false, &unsigned, who("ann"), &snap).is_err());
}

#[test]
fn signer_domains_and_parameters() {
    let snap = one_grant(
        "tia",
        "",
        "attest-example",
        vec![rule(
            &["attest"],
            &[CERTIFICATES],
            &["signers"],
            &["example.com/*"],
        )],
    );
    let req = info("POST", "/apis/certificates.k8s.io/v1beta1/clustertrustbundles");
    let p = plan(&req, None, who("tia"), &snap).unwrap().unwrap();
    let bundle = |signer: &str| json!({"metadata": {"name": "b"}, "spec": {"signerName": signer}});
    assert_eq!(
        check(&p, &req, true, &bundle("example.com/one"), who("tia"), &snap),
        Ok(())
    );
    assert!(check(&p, &req, true, &bundle("other.io/one"), who("tia"), &snap).is_err());
    assert_eq!(
        check(&p, &req, true, &json!({"spec": {}}), who("tia"), &snap),
        Ok(())
    );

    assert_eq!(param_group("v1"), "");
    assert_eq!(param_group("apps/v1"), "apps");
    assert_eq!(param_group(""), "*");
    let snap = snapshot();
    let req = info(
        "POST",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    );
    let p = plan(&req, None, who("ann"), &snap).unwrap().unwrap();
    let policy =
        json!({"metadata": {"name": "p"}, "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
    assert!(check(&p, &req, true, &policy, who("ann"), &snap).is_err());
    assert_eq!(check(&p, &req, true, &policy, who("dora"), &snap), Ok(()));
    assert_eq!(
        check(&p, &req, true, &json!({"spec": {}}), who("ann"), &snap),
        Ok(())
    );
}

#[test]
fn reads_and_deletes_need_nothing_more() {
    let snap = snapshot();
    for (m, p) in [
        ("GET", ROLES),
        (
            "DELETE",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles/r",
        ),
        ("GET", "/api/v1/namespaces/dev/configmaps/x"),
    ] {
        assert_eq!(plan(&info(m, p), None, who("ann"), &snap), Ok(None), "{m} {p}");
    }
}

#[test]
fn escalate_counts_with_its_resource_names() {
    // erin may write roles and escalate only the Role named r, as kube-apiserver's
    // RoleEscalationAuthorized asks with the request's name.
    let snap = one_grant(
        "erin",
        "dev",
        "own-role",
        vec![
            rule(&["create", "update", "patch"], &[RBAC], &["roles"], &[]),
            rule(&["escalate"], &[RBAC], &["roles"], &["r"]),
        ],
    );
    let secrets = role_with(json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]));
    let check_put = |name: &str| {
        let req = info("PUT", &format!("{ROLES}/{name}"));
        let p = plan(&req, None, who("erin"), &snap).unwrap().unwrap();
        check(&p, &req, false, &secrets, who("erin"), &snap)
    };
    assert_eq!(check_put("r"), Ok(()));
    assert!(check_put("other").is_err());
    // A create names no object on the request line: the named escalate does not count.
    let req = info("POST", ROLES);
    let p = plan(&req, None, who("erin"), &snap).unwrap().unwrap();
    assert!(check(&p, &req, true, &secrets, who("erin"), &snap).is_err());
}

#[test]
fn csrs_created_with_the_proxys_identity_are_refused_unless_allowed() {
    let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let apply: Option<&[u8]> = Some(b"application/apply-patch+yaml");
    for (method, path, ct) in [
        ("POST", csrs.to_string(), None),
        ("PUT", format!("{csrs}/n"), None),
        ("PATCH", format!("{csrs}/n"), apply),
        ("PATCH", format!("{csrs}/n"), None),
    ] {
        let err = refuse_csr_as_proxy(&info(method, &path), ct, who("ann")).expect_err(method);
        assert!(
            err.message
                .starts_with("certificatesigningrequests.certificates.k8s.io")
                && err.message.contains("--impersonate-upstream")
                && err.message.contains("--allow-csr-as-proxy"),
            "{}",
            err.message
        );
    }
    // What creates nothing: a merge patch of labels, approval, status, reads, other resources.
    for (method, path, ct) in [
        (
            "PATCH",
            format!("{csrs}/n"),
            Some(b"application/merge-patch+json".as_slice()),
        ),
        ("PUT", format!("{csrs}/n/approval"), None),
        ("PUT", format!("{csrs}/n/status"), None),
        ("GET", format!("{csrs}/n"), None),
        ("DELETE", format!("{csrs}/n"), None),
        ("POST", "/api/v1/namespaces/d/configmaps".to_string(), None),
    ] {
        assert_eq!(
            refuse_csr_as_proxy(&info(method, &path), ct, who("ann")),
            Ok(()),
            "{method} {path}"
        );
    }
}
