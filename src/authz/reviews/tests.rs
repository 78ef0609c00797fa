//! Exact JSON in, exact JSON out, as kube-apiserver answers and kubectl reads.

use std::collections::BTreeMap;

use super::*;
use crate::authz::rbac::{ClusterRole, ClusterRoleBinding, RbacObjects, Role, RoleBinding};

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
    match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => panic!("{json}: {e}"),
    }
}

/// ann: reads pods everywhere (group devs), execs and reads configmap "app" in dev (RoleBinding);
/// everyone authenticated: discovery URLs and creating self-reviews.
fn snapshot() -> Snapshot {
    let objects = RbacObjects {
        cluster_roles: vec![
            parse::<ClusterRole>(
                r#"{"metadata":{"name":"pod-reader"},
                    "rules":[{"apiGroups":[""],"resources":["pods","pods/log"],"verbs":["get","list","watch"]}]}"#,
            ),
            parse::<ClusterRole>(
                r#"{"metadata":{"name":"basic"},
                    "rules":[{"apiGroups":["authorization.k8s.io"],
                              "resources":["selfsubjectaccessreviews","selfsubjectrulesreviews"],"verbs":["create"]},
                             {"nonResourceURLs":["/api","/api/*","/version"],"verbs":["get"]}]}"#,
            ),
        ],
        roles: vec![parse::<Role>(
            r#"{"metadata":{"name":"dev-ops","namespace":"dev"},
                "rules":[{"apiGroups":[""],"resources":["pods/exec"],"verbs":["create"]},
                         {"apiGroups":[""],"resources":["configmaps"],"resourceNames":["app"],"verbs":["get"]}]}"#,
        )],
        cluster_role_bindings: vec![
            parse::<ClusterRoleBinding>(
                r#"{"metadata":{"name":"devs"},"roleRef":{"kind":"ClusterRole","name":"pod-reader"},
                    "subjects":[{"kind":"Group","name":"devs"}]}"#,
            ),
            parse::<ClusterRoleBinding>(
                r#"{"metadata":{"name":"basic"},"roleRef":{"kind":"ClusterRole","name":"basic"},
                    "subjects":[{"kind":"Group","name":"system:authenticated"}]}"#,
            ),
        ],
        role_bindings: vec![parse::<RoleBinding>(
            r#"{"metadata":{"name":"ann","namespace":"dev"},"roleRef":{"kind":"Role","name":"dev-ops"},
                "subjects":[{"kind":"User","name":"ann@example.com"}]}"#,
        )],
    };
    Snapshot::build(&objects)
}

fn info(method: &str, path: &str) -> RequestInfo {
    match RequestInfo::parse(method, path, None, false) {
        Ok(i) => i,
        Err(e) => panic!("{path}: {e}"),
    }
}

struct Ann {
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
}

impl Ann {
    fn new() -> Self {
        Ann {
            groups: vec!["devs".to_owned(), "system:authenticated".to_owned()],
            extra: BTreeMap::from([
                ("scopes".to_owned(), vec!["openid".to_owned(), "email".to_owned()]),
                ("acr".to_owned(), vec!["1".to_owned()]),
            ]),
        }
    }

    fn view(&self) -> UserView<'_> {
        UserView {
            name: "ann@example.com",
            uid: "0b2c",
            groups: &self.groups,
            extra: &self.extra,
        }
    }
}

fn ask(path: &str, body: &str, user: &UserView<'_>) -> Result<(u16, String), ReviewError> {
    let request = info("POST", path);
    let Some(kind) = is_self_review(&request) else {
        panic!("{path} is not a self-review");
    };
    let (code, json) = answer(kind, &request, body.as_bytes(), user, &snapshot())?;
    match String::from_utf8(json) {
        Ok(s) => Ok((code, s)),
        Err(e) => panic!("{e}"),
    }
}

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SSRR: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";

#[test]
fn which_requests_are_self_reviews() {
    use SelfReview::{AccessReview, RulesReview, SubjectReview};
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<SelfReview>)] = &[
        ("POST", SSAR, Some(AccessReview)),
        ("POST", "/apis/authorization.k8s.io/v1beta1/selfsubjectaccessreviews", Some(AccessReview)),
        ("POST", SSRR, Some(RulesReview)),
        ("POST", "/apis/authorization.k8s.io/v1beta1/selfsubjectrulesreviews", Some(RulesReview)),
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", Some(SubjectReview)),
        ("POST", "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews", Some(SubjectReview)),
        ("POST", "/apis/authentication.k8s.io/v1alpha1/selfsubjectreviews", Some(SubjectReview)),
        // Not self-reviews: authorized like any resource and forwarded.
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", None),
        ("POST", "/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews", None),
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", None),
        ("GET", SSAR, None),
        ("PUT", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/x", None),
        ("POST", "/apis/authorization.k8s.io/v1/namespaces/dev/selfsubjectaccessreviews", None),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/x/status", None),
        ("POST", "/apis/authorization.k8s.io/v2/selfsubjectaccessreviews", None),
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectaccessreviews", None),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectreviews", None),
        ("POST", "/api/v1/selfsubjectaccessreviews", None),
        ("POST", "/selfsubjectaccessreviews", None),
    ];
    for &(method, path, want) in cases {
        assert_eq!(is_self_review(&info(method, path)), want, "{method} {path}");
    }
}

#[test]
fn access_reviews() {
    let ann = Ann::new();
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        // kubectl auth can-i list pods -n dev (kubectl sends metadata.creationTimestamp null)
        (r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"resourceAttributes":{"namespace":"dev","verb":"list","resource":"pods"}},"status":{"allowed":false}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"resourceAttributes":{"namespace":"dev","verb":"list","resource":"pods"}},"status":{"allowed":true}}"#),
        // cluster scope, via the group
        (r#"{"spec":{"resourceAttributes":{"verb":"watch","resource":"pods"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"verb":"watch","resource":"pods"}},"status":{"allowed":true}}"#),
        (r#"{"spec":{"resourceAttributes":{"verb":"delete","resource":"pods","namespace":"dev","name":"web"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"namespace":"dev","verb":"delete","resource":"pods","name":"web"}},"status":{"allowed":false}}"#),
        // subresource, granted by a RoleBinding in dev only
        (r#"{"spec":{"resourceAttributes":{"namespace":"dev","verb":"create","resource":"pods","subresource":"exec","name":"web"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"namespace":"dev","verb":"create","resource":"pods","subresource":"exec","name":"web"}},"status":{"allowed":true}}"#),
        (r#"{"spec":{"resourceAttributes":{"namespace":"prod","verb":"create","resource":"pods","subresource":"exec"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"namespace":"prod","verb":"create","resource":"pods","subresource":"exec"}},"status":{"allowed":false}}"#),
        // resourceNames: the named configmap only
        (r#"{"spec":{"resourceAttributes":{"namespace":"dev","verb":"get","resource":"configmaps","name":"app"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"namespace":"dev","verb":"get","resource":"configmaps","name":"app"}},"status":{"allowed":true}}"#),
        (r#"{"spec":{"resourceAttributes":{"namespace":"dev","verb":"get","resource":"configmaps"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"namespace":"dev","verb":"get","resource":"configmaps"}},"status":{"allowed":false}}"#),
        // group and version echoed; nulls read as empty; selectors echoed untouched
        (r#"{"spec":{"resourceAttributes":{"verb":"list","group":"apps","version":"v1","resource":"deployments","name":null,"fieldSelector":{"rawSelector":"a=b"}},"nonResourceAttributes":null}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"verb":"list","group":"apps","version":"v1","resource":"deployments","fieldSelector":{"rawSelector":"a=b"}}},"status":{"allowed":false}}"#),
        // kubectl auth can-i get /api/v1
        (r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"nonResourceAttributes":{"path":"/api/v1","verb":"get"}},"status":{"allowed":false}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"nonResourceAttributes":{"path":"/api/v1","verb":"get"}},"status":{"allowed":true}}"#),
        (r#"{"spec":{"nonResourceAttributes":{"path":"/metrics","verb":"get"}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"nonResourceAttributes":{"path":"/metrics","verb":"get"}},"status":{"allowed":false}}"#),
        // empty attributes ask about verb "" on resource "": nothing grants that
        (r#"{"spec":{"resourceAttributes":{}}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{}},"status":{"allowed":false}}"#),
        // unknown fields are dropped, metadata kept
        (r#"{"metadata":{"labels":{"a":"b"},"name":"x"},"spec":{"user":"admin","groups":["system:masters"],"resourceAttributes":{"verb":"get","resource":"secrets","extra":1}},"status":{"allowed":true}}"#,
         r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"labels":{"a":"b"},"name":"x"},"spec":{"resourceAttributes":{"verb":"get","resource":"secrets"}},"status":{"allowed":false}}"#),
    ];
    for &(body, want) in cases {
        assert_eq!(ask(SSAR, body, &ann.view()), Ok((201, want.to_owned())), "{body}");
    }

    let v1beta1 = "/apis/authorization.k8s.io/v1beta1/selfsubjectaccessreviews";
    let body = r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1beta1","spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#;
    let want = r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1beta1","metadata":{},"spec":{"resourceAttributes":{"verb":"get","resource":"pods"}},"status":{"allowed":true}}"#;
    assert_eq!(ask(v1beta1, body, &ann.view()), Ok((201, want.to_owned())));
}

#[test]
fn access_review_answers_for_the_user_not_the_spec() {
    // Only system:authenticated: the group grant of ann does not apply.
    let groups = vec!["system:authenticated".to_owned()];
    let extra = BTreeMap::new();
    let bob = UserView {
        name: "bob",
        uid: "",
        groups: &groups,
        extra: &extra,
    };
    let body = r#"{"spec":{"resourceAttributes":{"verb":"list","resource":"pods"}}}"#;
    let want = r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"verb":"list","resource":"pods"}},"status":{"allowed":false}}"#;
    assert_eq!(ask(SSAR, body, &bob), Ok((201, want.to_owned())));
    let body = r#"{"spec":{"resourceAttributes":{"verb":"create","group":"authorization.k8s.io","resource":"selfsubjectrulesreviews"}}}"#;
    let (_, json) = match ask(SSAR, body, &bob) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    assert!(json.ends_with(r#""status":{"allowed":true}}"#), "{json}");
}

#[test]
fn rules_reviews() {
    let ann = Ann::new();
    // kubectl auth can-i --list -n dev
    let body = r#"{"kind":"SelfSubjectRulesReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"namespace":"dev"},"status":{"resourceRules":null,"nonResourceRules":null,"incomplete":false}}"#;
    // Cluster-wide grants first (the user's, then each group's, in order), then the namespace's.
    let want = concat!(
        r#"{"kind":"SelfSubjectRulesReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{},"status":{"resourceRules":["#,
        r#"{"verbs":["get","list","watch"],"apiGroups":[""],"resources":["pods","pods/log"]},"#,
        r#"{"verbs":["create"],"apiGroups":["authorization.k8s.io"],"resources":["selfsubjectaccessreviews","selfsubjectrulesreviews"]},"#,
        r#"{"verbs":["create"],"apiGroups":[""],"resources":["pods/exec"]},"#,
        r#"{"verbs":["get"],"apiGroups":[""],"resources":["configmaps"],"resourceNames":["app"]}],"#,
        r#""nonResourceRules":[{"verbs":["get"],"nonResourceURLs":["/api","/api/*","/version"]}],"incomplete":false}}"#,
    );
    assert_eq!(ask(SSRR, body, &ann.view()), Ok((201, want.to_owned())));

    // Another namespace: the RoleBinding's rules are gone. Nobody: empty lists, not null.
    let groups = vec!["other".to_owned()];
    let extra = BTreeMap::new();
    let nobody = UserView {
        name: "nobody",
        uid: "",
        groups: &groups,
        extra: &extra,
    };
    let want = r#"{"kind":"SelfSubjectRulesReview","apiVersion":"authorization.k8s.io/v1beta1","metadata":{},"spec":{},"status":{"resourceRules":[],"nonResourceRules":[],"incomplete":false}}"#;
    assert_eq!(
        ask(
            "/apis/authorization.k8s.io/v1beta1/selfsubjectrulesreviews",
            r#"{"spec":{"namespace":"prod"}}"#,
            &nobody
        ),
        Ok((201, want.to_owned()))
    );
    let Ok((_, prod)) = ask(SSRR, r#"{"spec":{"namespace":"prod"}}"#, &ann.view()) else {
        panic!("prod");
    };
    assert!(!prod.contains("pods/exec"), "{prod}");
    assert!(prod.contains(r#""resources":["pods","pods/log"]"#), "{prod}");
}

#[test]
fn subject_reviews() {
    let ann = Ann::new();
    // kubectl auth whoami
    let body = r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"status":{"userInfo":{}}}"#;
    let want = r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"status":{"userInfo":{"username":"ann@example.com","uid":"0b2c","groups":["devs","system:authenticated"],"extra":{"acr":["1"],"scopes":["openid","email"]}}}}"#;
    assert_eq!(
        ask(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body,
            &ann.view()
        ),
        Ok((201, want.to_owned()))
    );

    let groups = Vec::new();
    let extra = BTreeMap::new();
    let bare = UserView {
        name: "bob",
        uid: "",
        groups: &groups,
        extra: &extra,
    };
    let want = r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1alpha1","metadata":{},"status":{"userInfo":{"username":"bob"}}}"#;
    assert_eq!(
        ask(
            "/apis/authentication.k8s.io/v1alpha1/selfsubjectreviews",
            "{}",
            &bare
        ),
        Ok((201, want.to_owned()))
    );
}

#[test]
fn errors() {
    let ann = Ann::new();
    let ssr = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let bad = |m: &str| Err(ReviewError::BadRequest(m.to_owned()));
    type Answer = Result<(u16, String), ReviewError>;
    #[rustfmt::skip]
    let cases: &[(&str, &str, Answer)] = &[
        (SSAR, "", bad("the body is not a valid SelfSubjectAccessReview: EOF while parsing a value at line 1 column 0")),
        (SSAR, "{", bad("the body is not a valid SelfSubjectAccessReview: EOF while parsing an object at line 1 column 1")),
        (SSAR, "[]", bad("the body is not a valid SelfSubjectAccessReview: invalid type: sequence, expected a map at line 1 column 0")),
        (SSAR, r#"{"spec":{"resourceAttributes":{"verb":5}}}"#, bad("the body is not a valid SelfSubjectAccessReview: invalid type: integer `5`, expected a string")),
        (SSAR, r#"{"metadata":"x","spec":{}}"#, bad("the body is not a valid SelfSubjectAccessReview: invalid type: string \"x\", expected a map")),
        (SSAR, r#"{"apiVersion":"authorization.k8s.io/v1beta1","spec":{}}"#, bad("the API version in the data (authorization.k8s.io/v1beta1) does not match the expected API version (authorization.k8s.io/v1)")),
        (SSAR, r#"{"kind":"SelfSubjectRulesReview","spec":{"namespace":"dev"}}"#, bad(r#"not a SelfSubjectAccessReview: the kind in the data is "SelfSubjectRulesReview""#)),
        (SSAR, r#"{"spec":{}}"#, Err(ReviewError::Invalid(r#"SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec: exactly one of nonResourceAttributes or resourceAttributes must be specified"#.to_owned()))),
        (SSAR, "{}", Err(ReviewError::Invalid(r#"SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec: exactly one of nonResourceAttributes or resourceAttributes must be specified"#.to_owned()))),
        (SSAR, r#"{"spec":{"resourceAttributes":{},"nonResourceAttributes":{}}}"#, Err(ReviewError::Invalid(r#"SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec: exactly one of nonResourceAttributes or resourceAttributes must be specified"#.to_owned()))),
        (SSRR, r#"{"spec":{}}"#, bad("no namespace on request")),
        (SSRR, r#"{"spec":null}"#, bad("no namespace on request")),
        (SSRR, "{}", bad("no namespace on request")),
        (SSRR, "null", bad("the body is not a valid SelfSubjectRulesReview: invalid type: null, expected a map at line 1 column 4")),
        (ssr, "", bad("the body is not a valid SelfSubjectReview: EOF while parsing a value at line 1 column 0")),
        (ssr, r#"{"kind":"Pod","apiVersion":"v1"}"#, bad("the API version in the data (v1) does not match the expected API version (authentication.k8s.io/v1)")),
        (ssr, r#"{"kind":"Pod"}"#, bad(r#"not a SelfSubjectReview: the kind in the data is "Pod""#)),
    ];
    for (path, body, want) in cases {
        assert_eq!(&ask(path, body, &ann.view()), want, "{path} {body}");
    }
}

#[test]
fn error_codes() {
    let cases = [
        (ReviewError::BadRequest(String::new()), 400, "BadRequest"),
        (ReviewError::Invalid(String::new()), 422, "Invalid"),
        (ReviewError::Internal(String::new()), 500, "InternalError"),
    ];
    for (e, code, reason) in cases {
        assert_eq!((e.code(), e.reason()), (code, reason));
    }
}
