//! Self-review bodies (SelfSubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview) as
//! JSON and as Kubernetes protobuf, answered for a fixed user from the built-in roles. The first
//! byte picks the kind, the encoding and the endpoint version; an answer is always JSON naming
//! the user the proxy authenticated, never one the body asked for.

use std::{collections::BTreeMap, sync::LazyLock};

use kube_oidc_proxy::authz::{
    default_roles::default_role_objects,
    rbac::Snapshot,
    request_info::RequestInfo,
    reviews::{self, SelfReview, UserView, protobuf},
};

static SNAPSHOT: LazyLock<Snapshot> =
    LazyLock::new(|| Snapshot::build(&default_role_objects("k8s", &["dev", "prod"])));

const ENDPOINTS: [(SelfReview, &str); 4] = [
    (
        SelfReview::AccessReview,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    ),
    (
        SelfReview::RulesReview,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
    ),
    (
        SelfReview::SubjectReview,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    ),
    (
        SelfReview::AccessReview,
        "/apis/authorization.k8s.io/v1beta1/selfsubjectaccessreviews",
    ),
];

pub fn run(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let (kind, path) = ENDPOINTS[usize::from(choice % 4)];
    let info = RequestInfo::parse("POST", path, None, false).expect("a self-review endpoint");
    assert_eq!(reviews::is_self_review(&info), Some(kind));
    let json = if choice & 4 == 0 {
        body.to_vec()
    } else {
        match protobuf::to_json(kind, body) {
            Ok(json) => json,
            Err(_) => return,
        }
    };
    let groups = vec!["k8s:devops".to_string(), "system:authenticated".to_string()];
    let extra = BTreeMap::new();
    let user = UserView {
        name: "ann@example.com",
        uid: "ann",
        groups: &groups,
        extra: &extra,
    };
    if let Ok((code, answer)) = reviews::answer(kind, &info, &json, &user, &SNAPSHOT) {
        assert_eq!(code, 201);
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("answers are JSON");
        if kind == SelfReview::SubjectReview {
            assert_eq!(answer["status"]["userInfo"]["username"], "ann@example.com");
        }
    }
}
