//! 1,000 roles and 10,000 bindings: the index gives the same decisions a full scan would.

use super::*;

const CLUSTER_ROLES: usize = 500;
const ROLES: usize = 500;
const NAMESPACES: usize = 50;
const BINDINGS_EACH: usize = 5_000;

fn objects() -> RbacObjects {
    let cluster_roles = (0..CLUSTER_ROLES)
        .map(|k| {
            cluster_role(
                &format!("cr-{k}"),
                vec![rule(&["get", "list"], &[""], &[&format!("res-{k}")])],
            )
        })
        .collect();
    // Role k lives in namespace k % NAMESPACES.
    let roles = (0..ROLES)
        .map(|k| {
            let ns = format!("ns-{}", k % NAMESPACES);
            role(
                &ns,
                &format!("role-{k}"),
                vec![rule(&["create"], &["apps"], &[&format!("res-{k}")])],
            )
        })
        .collect();
    let cluster_role_bindings = (0..BINDINGS_EACH)
        .map(|j| {
            let user = subject(SubjectKind::User, &format!("user-{j}"), "");
            crb(
                &format!("crb-{j}"),
                RoleRefKind::ClusterRole,
                &format!("cr-{}", j % CLUSTER_ROLES),
                vec![user],
            )
        })
        .collect();
    // Binding j sits in namespace j % NAMESPACES, which is where role j % ROLES lives.
    let role_bindings = (0..BINDINGS_EACH)
        .map(|j| {
            let group = subject(SubjectKind::Group, &format!("grp-{j}"), "");
            let ns = format!("ns-{}", j % NAMESPACES);
            rb(
                &ns,
                &format!("rb-{j}"),
                RoleRefKind::Role,
                &format!("role-{}", j % ROLES),
                vec![group],
            )
        })
        .collect();
    RbacObjects {
        roles,
        cluster_roles,
        role_bindings,
        cluster_role_bindings,
    }
}

#[test]
fn ten_thousand_bindings_decide_correctly() {
    let objects = objects();
    assert_eq!(objects.cluster_roles.len() + objects.roles.len(), 1_000);
    assert_eq!(
        objects.cluster_role_bindings.len() + objects.role_bindings.len(),
        10_000
    );
    let snapshot = Snapshot::build(&objects);
    assert_eq!(snapshot.subject_count(), 10_000);

    let noise: Vec<String> = (0..50).map(|i| format!("noise-{i}")).collect();
    for j in 0..BINDINGS_EACH {
        let k = j % CLUSTER_ROLES;
        let other = (k + 1) % CLUSTER_ROLES;
        let user = format!("user-{j}");
        let checks = [
            ("GET", format!("/api/v1/namespaces/ns-7/res-{k}/x"), Allow),
            ("GET", format!("/api/v1/namespaces/ns-7/res-{k}"), Allow),
            ("GET", format!("/api/v1/res-{k}"), Allow),
            ("GET", format!("/api/v1/namespaces/ns-7/res-{other}/x"), Deny),
            ("DELETE", format!("/api/v1/namespaces/ns-7/res-{k}/x"), Deny),
            ("GET", format!("/apis/apps/v1/namespaces/ns-7/res-{k}/x"), Deny),
        ];
        for (method, url, want) in &checks {
            assert_eq!(
                snapshot.authorize(&user, &noise, &req(method, url)),
                *want,
                "{user} {method} {url}"
            );
        }

        let r = j % ROLES;
        let ns = j % NAMESPACES;
        let groups = ["system:authenticated".to_owned(), format!("grp-{j}")];
        let checks = [
            ("POST", format!("/apis/apps/v1/namespaces/ns-{ns}/res-{r}"), Allow),
            (
                "POST",
                format!("/apis/apps/v1/namespaces/ns-{}/res-{r}", (ns + 1) % NAMESPACES),
                Deny,
            ),
            ("POST", format!("/apis/apps/v1/res-{r}"), Deny),
            ("GET", format!("/apis/apps/v1/namespaces/ns-{ns}/res-{r}"), Deny),
            ("POST", format!("/api/v1/namespaces/ns-{ns}/res-{r}"), Deny),
            (
                "POST",
                format!("/apis/apps/v1/namespaces/ns-{ns}/res-{}", (r + 1) % ROLES),
                Deny,
            ),
        ];
        for (method, url, want) in &checks {
            assert_eq!(
                snapshot.authorize("someone", &groups, &req(method, url)),
                *want,
                "grp-{j} {method} {url}"
            );
        }
    }
    let url = "/api/v1/namespaces/ns-0/res-0";
    assert_eq!(
        snapshot.authorize("user-5000", &["grp-5000"], &req("GET", url)),
        Deny
    );
}
