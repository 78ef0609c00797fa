//! Exact error strings with their lines, and what a parsed file grants.

use std::path::Path;

use super::*;
use crate::authz::default_roles::default_role_objects;
use crate::authz::rbac::{Decision, SnapshotBuilder};
use crate::authz::request_info::RequestInfo;

fn parsed(text: &str) -> RoleFile {
    match parse(Path::new("roles.yaml"), text) {
        Ok(f) => f,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(text: &str) -> String {
    match parse(Path::new("roles.yaml"), text) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e.to_string(),
    }
}

const EXAMPLE: &str = r#"# Extra roles for two clusters.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: pod-reader
  clusterName: alpha
  labels: {team: a}
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  resourceNames: ["web"]
  verbs: ["get"]
- nonResourceURLs: ["/metrics", "/logs/*"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: developers-read
  clusterName: alpha
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: pod-reader
subjects:
- kind: Group
  apiGroup: rbac.authorization.k8s.io
  name: developer
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: secret-reader
  namespace: dev
  clusterName: alpha
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ann-secrets
  namespace: dev
  clusterName: alpha
roleRef: {kind: Role, name: secret-reader}
subjects:
- {kind: User, name: ann}
- {kind: ServiceAccount, name: ci}
---
# The same name in another cluster is another object.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader, clusterName: beta, namespace: ignored}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
# "*" is a cluster named "*", not every cluster.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: star, clusterName: "*"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{kind: Group, name: developer}]
---
"#;

#[test]
fn parses_all_kinds_and_fields() {
    let file = parsed(EXAMPLE);
    let mut clusters: Vec<&str> = file.by_cluster.keys().map(String::as_str).collect();
    clusters.sort_unstable();
    assert_eq!(clusters, vec!["*", "alpha", "beta"]);
    assert!(file.for_cluster("gamma").is_none());

    let Some(alpha) = file.for_cluster("alpha") else {
        panic!("no alpha");
    };
    assert_eq!(alpha.cluster_roles.len(), 1);
    let rules = &alpha.cluster_roles[0].rules;
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[1].resource_names, vec!["web"]);
    assert_eq!(rules[2].non_resource_urls, vec!["/metrics", "/logs/*"]);
    assert_eq!(alpha.cluster_roles[0].metadata.cluster_name, "alpha");
    assert_eq!(alpha.cluster_role_bindings.len(), 1);
    assert_eq!(alpha.roles.len(), 1);
    assert_eq!(alpha.roles[0].metadata.namespace, "dev");
    assert_eq!(alpha.role_bindings.len(), 1);
    assert_eq!(alpha.role_bindings[0].role_ref.api_group, "");
    assert_eq!(alpha.role_bindings[0].subjects.len(), 2);

    let Some(beta) = file.for_cluster("beta") else {
        panic!("no beta");
    };
    assert_eq!(
        beta.cluster_roles[0].metadata.namespace, "",
        "cleared for a cluster-scoped kind"
    );
    assert!(beta.cluster_role_bindings.is_empty());
}

fn decide(objects: &[&RbacObjects], user: &str, group: &str, method: &str, url: &str) -> Decision {
    let mut builder = SnapshotBuilder::new();
    for o in objects {
        builder.add_objects(o);
    }
    let snapshot = builder.build();
    let info = match RequestInfo::parse(method, url, None, false) {
        Ok(i) => i,
        Err(e) => panic!("{url}: {e}"),
    };
    snapshot.authorize(user, &[group, "system:authenticated"], &info)
}

#[test]
fn a_parsed_file_builds_a_snapshot() {
    use Decision::{Allow, Deny};
    let file = parsed(EXAMPLE);
    let empty = RbacObjects::default();
    let alpha = file.for_cluster("alpha").unwrap_or(&empty);
    let beta = file.for_cluster("beta").unwrap_or(&empty);
    let defaults = default_role_objects("alpha", &["dev", "prod"]);
    let with_defaults = [alpha, &defaults];
    type Case<'a> = (
        &'a [&'a RbacObjects],
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Decision,
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (&[alpha], "bob", "developer", "GET", "/api/v1/namespaces/prod/pods", Allow),
        (&[alpha], "bob", "developer", "GET", "/api/v1/namespaces/prod/pods/p/log", Allow),
        (&[alpha], "bob", "developer", "DELETE", "/api/v1/namespaces/prod/pods/p", Deny),
        (&[alpha], "bob", "developer", "GET", "/apis/apps/v1/namespaces/prod/deployments/web", Allow),
        (&[alpha], "bob", "developer", "GET", "/apis/apps/v1/namespaces/prod/deployments/api", Deny),
        (&[alpha], "bob", "developer", "GET", "/apis/apps/v1/namespaces/prod/deployments", Deny),
        (&[alpha], "bob", "developer", "GET", "/metrics", Allow),
        (&[alpha], "bob", "developer", "GET", "/logs/kube-apiserver.log", Allow),
        (&[alpha], "bob", "developer", "POST", "/metrics", Deny),
        (&[alpha], "bob", "other", "GET", "/metrics", Deny),
        (&[alpha], "ann", "other", "GET", "/api/v1/namespaces/dev/secrets/s", Allow),
        (&[alpha], "ann", "other", "GET", "/api/v1/namespaces/prod/secrets/s", Deny),
        (&[alpha], "system:serviceaccount:dev:ci", "other", "GET", "/api/v1/namespaces/dev/secrets/s", Allow),
        (&[alpha], "system:serviceaccount:prod:ci", "other", "GET", "/api/v1/namespaces/dev/secrets/s", Deny),
        // beta has the role but no binding, and "*" does not reach it.
        (&[beta], "bob", "developer", "GET", "/api/v1/namespaces/prod/pods", Deny),
        // Together with the built-in roles of the cluster.
        (&with_defaults, "bob", "developer", "GET", "/metrics", Allow),
        (&with_defaults, "bob", "alpha:devops:dev", "DELETE", "/api/v1/namespaces/dev/pods/p", Allow),
        (&with_defaults, "bob", "alpha:devops:dev", "DELETE", "/api/v1/namespaces/prod/pods/p", Deny),
    ];
    for &(objects, user, group, method, url, want) in cases {
        assert_eq!(
            decide(objects, user, group, method, url),
            want,
            "{user} {group} {method} {url}"
        );
    }
}

#[test]
fn empty_files_and_documents() {
    for text in [
        "",
        "\n",
        "---\n",
        "---\n---\n",
        "# only a comment\n",
        "---\n# c\n---\n",
        "~\n",
        "--- null\n",
    ] {
        assert_eq!(parsed(text), RoleFile::default(), "{text:?}");
    }
    let doc =
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, clusterName: a}\n";
    for text in [
        format!("{doc}---\n"),
        format!("---\n{doc}---\n---\n"),
        format!("---\n\n---\n{doc}"),
        format!("{doc}...\n"),
    ] {
        let file = parsed(&text);
        assert_eq!(file.by_cluster.len(), 1, "{text}");
        assert_eq!(
            file.for_cluster("a").map(|o| o.cluster_roles.len()),
            Some(1),
            "{text}"
        );
    }
}

const HEAD: &str = "apiVersion: rbac.authorization.k8s.io/v1\n";

#[test]
fn errors_name_file_line_and_field() {
    let role = |rest: &str| {
        format!("{HEAD}kind: Role\nmetadata:\n  name: r\n  namespace: dev\n  clusterName: a\n{rest}")
    };
    let cluster_role =
        |rest: &str| format!("{HEAD}kind: ClusterRole\nmetadata:\n  name: r\n  clusterName: a\n{rest}");
    let binding = |kind: &str, rest: &str| {
        format!("{HEAD}kind: {kind}\nmetadata:\n  name: b\n  namespace: dev\n  clusterName: a\n{rest}")
    };
    let subjects = |kind: &str, list: &str| {
        binding(
            kind,
            &format!("roleRef: {{kind: ClusterRole, name: r}}\nsubjects:\n{list}"),
        )
    };
    #[rustfmt::skip]
    let cases: Vec<(String, &str)> = vec![
        // YAML syntax and shape errors: serde-saphyr's message at its line.
        ("kind: Role\n metadata: x\n".into(), "roles.yaml:2: mapping values are not allowed in this context"),
        ("kind: Role\nmetadata:\n\tname: x\n".into(), "roles.yaml:3: tabs disallowed within this context (block indentation)"),
        ("kind: Role\nkind: Role\n".into(), "roles.yaml:2: duplicate mapping key: kind, set DuplicateKeyPolicy in Options if acceptable"),
        (cluster_role("rules: 5\n"), "roles.yaml:6: expected sequence start"),
        (format!("{HEAD}kind: Role\nmetadata:\n  name: [x]\n"), "roles.yaml:4: expected string scalar"),
        ("- a\n- b\n".into(), "roles.yaml:1: expected mapping start"),
        (format!("{HEAD}kind: ClusterRole\nmetadata: {{name: r, clusterName: a}}\n---\njust text\n"), "roles.yaml:5: expected mapping start"),
        // kind
        ("metadata: {name: r}\n".into(), "roles.yaml:1: documents[0].kind: missing kind (want Role, ClusterRole, RoleBinding or ClusterRoleBinding)"),
        (format!("{HEAD}kind: Pod\n"), "roles.yaml:2: documents[0].kind: unsupported kind \"Pod\" (want Role, ClusterRole, RoleBinding or ClusterRoleBinding)"),
        (format!("{HEAD}kind: ''\n"), "roles.yaml:2: documents[0].kind: missing kind (want Role, ClusterRole, RoleBinding or ClusterRoleBinding)"),
        // apiVersion
        ("kind: Role\n".into(), "roles.yaml:1: documents[0].apiVersion: missing apiVersion (want rbac.authorization.k8s.io/v1)"),
        ("kind: Role\napiVersion: rbac.authorization.k8s.io/v1beta1\n".into(), "roles.yaml:2: documents[0].apiVersion: unsupported apiVersion \"rbac.authorization.k8s.io/v1beta1\" (want rbac.authorization.k8s.io/v1)"),
        // metadata
        (format!("{HEAD}kind: ClusterRole\n"), "roles.yaml:1: documents[0].metadata.name: missing name"),
        (format!("{HEAD}kind: ClusterRole\nmetadata:\n  clusterName: a\n"), "roles.yaml:4: documents[0].metadata.name: missing name"),
        (format!("{HEAD}kind: ClusterRole\nmetadata:\n  name: ''\n  clusterName: a\n"), "roles.yaml:4: documents[0].metadata.name: missing name"),
        (format!("{HEAD}kind: ClusterRole\nmetadata:\n  name: a/b\n  clusterName: a\n"), "roles.yaml:4: documents[0].metadata.name: invalid name \"a/b\": may not contain '/'"),
        (format!("{HEAD}kind: ClusterRole\nmetadata:\n  name: r\n"), "roles.yaml:4: documents[0].metadata.clusterName: missing cluster name"),
        (format!("{HEAD}kind: ClusterRole\nmetadata:\n  name: r\n  clusterName:\n"), "roles.yaml:4: documents[0].metadata.clusterName: missing cluster name"),
        (format!("{HEAD}kind: ClusterRole\nmetadata:\n  name: r\n  clusterName: \"\"\n"), "roles.yaml:5: documents[0].metadata.clusterName: missing cluster name"),
        (format!("{HEAD}kind: Role\nmetadata:\n  name: r\n  clusterName: a\n"), "roles.yaml:4: documents[0].metadata.namespace: missing namespace (a Role is namespaced)"),
        (format!("{HEAD}kind: RoleBinding\nmetadata: {{name: b, clusterName: a}}\n"), "roles.yaml:3: documents[0].metadata.namespace: missing namespace (a RoleBinding is namespaced)"),
        // rules
        (role("rules:\n- apiGroups: ['']\n  resources: [pods]\n"), "roles.yaml:8: documents[0].rules[0].verbs: verbs must contain at least one value"),
        (role("rules:\n- {apiGroups: [''], resources: [pods], verbs: [get]}\n- {apiGroups: [''], resources: [pods], verbs: []}\n"), "roles.yaml:9: documents[0].rules[1].verbs: verbs must contain at least one value"),
        (role("rules:\n- nonResourceURLs: [/metrics]\n  verbs: [get]\n"), "roles.yaml:8: documents[0].rules[0].nonResourceURLs: namespaced rules cannot apply to non-resource URLs"),
        (cluster_role("rules:\n- nonResourceURLs: [/metrics]\n  resources: [pods]\n  verbs: [get]\n"), "roles.yaml:7: documents[0].rules[0].nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"),
        (cluster_role("rules:\n- resources: [pods]\n  verbs: [get]\n"), "roles.yaml:7: documents[0].rules[0].apiGroups: resource rules must supply at least one api group"),
        (cluster_role("rules:\n- apiGroups: ['']\n  resource: [pods]\n  verbs: [get]\n"), "roles.yaml:7: documents[0].rules[0].resources: resource rules must supply at least one resource"),
        // roleRef
        (binding("RoleBinding", "subjects: []\n"), "roles.yaml:1: documents[0].roleRef: missing roleRef"),
        (binding("RoleBinding", "roleRef:\n  kind: Secret\n  name: r\n"), "roles.yaml:8: documents[0].roleRef.kind: unsupported kind \"Secret\" (want Role or ClusterRole)"),
        (binding("RoleBinding", "roleRef:\n  name: r\n"), "roles.yaml:8: documents[0].roleRef.kind: missing kind (want Role or ClusterRole)"),
        (binding("ClusterRoleBinding", "roleRef:\n  kind: Role\n  name: r\n"), "roles.yaml:8: documents[0].roleRef.kind: a ClusterRoleBinding can only refer to a ClusterRole"),
        (binding("RoleBinding", "roleRef: {kind: Role}\n"), "roles.yaml:7: documents[0].roleRef.name: missing name"),
        (binding("RoleBinding", "roleRef: {apiGroup: apps, kind: Role, name: r}\n"), "roles.yaml:7: documents[0].roleRef.apiGroup: unsupported apiGroup \"apps\" (want rbac.authorization.k8s.io)"),
        // subjects
        (subjects("RoleBinding", "- kind: Robot\n  name: r2\n"), "roles.yaml:9: documents[0].subjects[0].kind: unsupported kind \"Robot\" (want User, Group or ServiceAccount)"),
        (subjects("RoleBinding", "- {kind: User, name: ann}\n- {name: bob}\n"), "roles.yaml:10: documents[0].subjects[1].kind: missing kind (want User, Group or ServiceAccount)"),
        (subjects("RoleBinding", "- kind: Group\n"), "roles.yaml:9: documents[0].subjects[0].name: missing name"),
        (subjects("RoleBinding", "- {kind: Group, name: g, apiGroup: v1}\n"), "roles.yaml:9: documents[0].subjects[0].apiGroup: unsupported apiGroup \"v1\" (want rbac.authorization.k8s.io)"),
        (subjects("RoleBinding", "- {kind: ServiceAccount, name: ci, apiGroup: rbac.authorization.k8s.io}\n"), "roles.yaml:9: documents[0].subjects[0].apiGroup: unsupported apiGroup \"rbac.authorization.k8s.io\" for a ServiceAccount (want \"\")"),
        (subjects("ClusterRoleBinding", "- {kind: ServiceAccount, name: ci}\n"), "roles.yaml:9: documents[0].subjects[0].namespace: missing namespace (a ServiceAccount subject of a ClusterRoleBinding needs one)"),
        // duplicates, and the index of a later document
        (format!("{HEAD}kind: ClusterRole\nmetadata: {{name: r, clusterName: a}}\n---\n---\n{HEAD}kind: ClusterRole\nmetadata: {{name: r, clusterName: a}}\n"),
         "roles.yaml:6: documents[1].metadata.name: duplicate ClusterRole \"r\" for cluster \"a\", first defined at line 1"),
        (format!("{}---\n{}", role(""), role("")), "roles.yaml:8: documents[1].metadata.name: duplicate Role \"r\" in namespace \"dev\" for cluster \"a\", first defined at line 1"),
    ];
    for (text, want) in &cases {
        assert_eq!(error(text), *want, "{text}");
    }
}

#[test]
fn the_example_line_of_the_documentation() {
    // The Display the module documentation promises, at the line of the metadata.
    let mut text = String::new();
    for name in ["a", "b"] {
        text.push_str(&format!(
            "{HEAD}kind: ClusterRole\nmetadata:\n  name: {name}\n  clusterName: c\n---\n"
        ));
    }
    text.push_str(&format!(
        "# third\n{HEAD}kind: ClusterRole\nmetadata:\n  name: c\n"
    ));
    assert_eq!(
        error(&text),
        "roles.yaml:17: documents[2].metadata.clusterName: missing cluster name"
    );
}

#[test]
fn load_reads_the_file() {
    let missing = Path::new("/nonexistent/kube-oidc-proxy/roles.yaml");
    match load(missing) {
        Err(e @ RoleFileError::Read { .. }) => assert_eq!(
            e.to_string(),
            "/nonexistent/kube-oidc-proxy/roles.yaml: cannot read the role file: No such file or directory (os error 2)"
        ),
        other => panic!("{other:?}"),
    }

    let dir = std::env::temp_dir().join(format!("role-file-test-{}", std::process::id()));
    let write = |name: &str, text: &[u8]| {
        let path = dir.join(name);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
            panic!("{}: {e}", path.display());
        }
        path
    };
    let good = write("good.yaml", EXAMPLE.as_bytes());
    assert_eq!(load(&good).ok(), Some(parsed(EXAMPLE)));
    let bad = write("bad.yaml", b"kind: Role\n");
    let want = format!(
        "{}:1: documents[0].apiVersion: missing apiVersion (want rbac.authorization.k8s.io/v1)",
        bad.display()
    );
    assert_eq!(load(&bad).map_err(|e| e.to_string()), Err(want));
    let binary = write("binary.yaml", b"kind: \xff\n");
    assert!(matches!(load(&binary), Err(RoleFileError::Read { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_read_the_same_as_config_errors() {
    let dir = std::env::temp_dir().join(format!("kop-rf-conv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("roles.yaml");
    std::fs::write(
        &path,
        "kind: Role\nmetadata:\n  name: r\n  clusterName: \"bad name\"\n",
    )
    .unwrap();
    let err = load(&path).unwrap_err();
    let text = err.to_string();
    let config: crate::config::ConfigError = err.into();
    assert_eq!(config.to_string(), text);
    assert!(config.line > 0, "{config}");
    let missing = load(&dir.join("missing.yaml")).unwrap_err();
    let text = missing.to_string();
    assert_eq!(crate::config::ConfigError::from(missing).to_string(), text);
    let _ = std::fs::remove_dir_all(&dir);
}
