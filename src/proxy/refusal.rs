//! Every way the proxy itself ends a request, as one value: what it answers (a Kubernetes
//! `Status` with the right code and reason), how metrics count it, and whether the audit webhook
//! hears of it as a denial. The handler returns `Result<_, Refusal>` and uses `?`; the recorder
//! turns a refusal into its answer in one place.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::{
    ProxyBody,
    precondition::PreconditionError,
    request_body::BodyError,
    status::{self, status, status_with_details},
};
use crate::{
    authz::{request_info::RequestInfo, requester::Refused, reviews::ReviewError},
    cluster::UpstreamError,
    metrics::Decision,
};

#[derive(Debug)]
pub enum Refusal {
    /// No valid token: 401 and nothing about why.
    Unauthenticated,
    /// A request the proxy will not parse or serve as it is.
    BadRequest(String),
    /// A request target longer than the URI type holds (HTTP/2: its length, from the marker
    /// path `crate::server::edge` put in its place).
    UriTooLong(Option<usize>),
    UnknownCluster(String),
    MethodNotAllowed(String),
    /// The cluster's RBAC is not loaded yet.
    NotReady(Arc<str>),
    /// The RBAC decision, for this request (or the `create` an upgrade also needs).
    Forbidden {
        user: String,
        info: Box<RequestInfo>,
    },
    /// A requester check on what a write would produce.
    WriteRefused {
        info: Box<RequestInfo>,
        refused: Box<Refused>,
    },
    /// A per-user or global in-flight limit.
    TooManyRequests,
    /// A body the proxy had to read itself.
    Body(BodyError),
    Upstream {
        cluster: Arc<str>,
        error: UpstreamError,
    },
    /// The dry run of a checked write answered something that is not an object.
    DryRunUnreadable(Arc<str>),
    /// A checked write whose real write cannot carry the dry run's uid and resourceVersion.
    Precondition(PreconditionError),
    /// A self-review that could not be answered.
    Review(ReviewError),
}

impl Refusal {
    /// How metrics count it.
    pub fn decision(&self) -> Decision {
        match self {
            Refusal::Unauthenticated => Decision::Unauthenticated,
            Refusal::Forbidden { .. } | Refusal::WriteRefused { .. } => Decision::Deny,
            _ => Decision::Error,
        }
    }

    /// The request a denial is about, for the audit event (`None`: not audited as a denial).
    pub fn denied(&self) -> Option<&RequestInfo> {
        match self {
            Refusal::Forbidden { info, .. } | Refusal::WriteRefused { info, .. } => Some(info),
            _ => None,
        }
    }

    /// The answer: a Kubernetes `Status`, worded as kube-apiserver words its own.
    pub fn into_response(self) -> Response<ProxyBody> {
        match self {
            Refusal::Unauthenticated => status::unauthorized(),
            Refusal::BadRequest(msg) => status(StatusCode::BAD_REQUEST, "BadRequest", &msg),
            Refusal::UriTooLong(len) => status(
                StatusCode::URI_TOO_LONG,
                "BadRequest",
                &super::size::uri_too_long_message(len),
            ),
            Refusal::UnknownCluster(name) => status::unknown_cluster(&name),
            Refusal::MethodNotAllowed(method) => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("method {method} is not served"),
            ),
            Refusal::NotReady(cluster) => status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("authorization data of cluster {cluster:?} is not loaded yet"),
            ),
            Refusal::Forbidden { user, info } => status::forbidden(&user, &info),
            Refusal::WriteRefused { refused, .. } => {
                let refused = *refused;
                let mut details = json!({ "kind": refused.kind });
                if !refused.group.is_empty() {
                    details["group"] = refused.group.into();
                }
                if !refused.name.is_empty() {
                    details["name"] = refused.name.into();
                }
                status_with_details(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &refused.message,
                    Some(details),
                )
            }
            Refusal::TooManyRequests => {
                let mut resp = status_with_details(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests from this user, please try again later.",
                    Some(json!({"retryAfterSeconds": 1})),
                );
                // kube-apiserver's max-in-flight answer, which client-go honours and retries.
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
            Refusal::Body(e) => {
                let (code, reason) = match e {
                    BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
                    BodyError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "Timeout"),
                    BodyError::Failed => (StatusCode::BAD_REQUEST, "BadRequest"),
                };
                status(code, reason, &e.to_string())
            }
            Refusal::Upstream { cluster, error } => match error {
                UpstreamError::Connect(_) => status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    &format!("the API server of cluster {cluster:?} is unreachable"),
                ),
                UpstreamError::Timeout(d) => status(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    &format!(
                        "the API server of cluster {cluster:?} did not answer within {}s",
                        d.as_secs()
                    ),
                ),
                UpstreamError::Failed(_) | UpstreamError::Kubeconfig(_) => failed_upstream(&cluster),
            },
            Refusal::DryRunUnreadable(cluster) => failed_upstream(&cluster),
            Refusal::Precondition(e) => match e {
                PreconditionError::Unsupported(_) => status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &e.to_string(),
                ),
                _ => status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
            },
            Refusal::Review(e) => {
                let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::BAD_REQUEST);
                status(code, e.reason(), &e.to_string())
            }
        }
    }
}

/// No internal detail: the operator's log has the error, the client a plain sentence.
fn failed_upstream(cluster: &str) -> Response<ProxyBody> {
    status(
        StatusCode::BAD_GATEWAY,
        "InternalError",
        &format!("the request to the API server of cluster {cluster:?} failed"),
    )
}

impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Self {
        Refusal::Body(e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    async fn body(resp: Response<ProxyBody>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("Status JSON")
    }

    /// Each refusal's code, reason and metrics decision, and that every answer is a Status.
    #[tokio::test]
    async fn refusals_map_to_statuses() {
        let info = RequestInfo::parse("GET", "/api/v1/namespaces/dev/secrets", None, false).unwrap();
        let cluster: Arc<str> = Arc::from("k8s");
        #[rustfmt::skip]
        let cases: Vec<(Refusal, u16, &str, Decision)> = vec![
            (Refusal::Unauthenticated, 401, "Unauthorized", Decision::Unauthenticated),
            (Refusal::BadRequest("x".into()), 400, "BadRequest", Decision::Error),
            (Refusal::UriTooLong(Some(70_000)), 414, "BadRequest", Decision::Error),
            (Refusal::UnknownCluster("nope".into()), 404, "NotFound", Decision::Error),
            (Refusal::MethodNotAllowed("TRACE".into()), 405, "MethodNotAllowed", Decision::Error),
            (Refusal::NotReady(cluster.clone()), 503, "ServiceUnavailable", Decision::Error),
            (Refusal::Forbidden { user: "ann".into(), info: Box::new(info.clone()) }, 403, "Forbidden", Decision::Deny),
            (Refusal::WriteRefused { info: Box::new(info.clone()), refused: Box::new(Refused {
                message: "no".into(), group: String::new(), kind: "roles".into(), name: "r".into() }) },
                403, "Forbidden", Decision::Deny),
            (Refusal::TooManyRequests, 429, "TooManyRequests", Decision::Error),
            (Refusal::Body(BodyError::TooLarge(10)), 413, "RequestEntityTooLarge", Decision::Error),
            (Refusal::Body(BodyError::Timeout(Duration::from_secs(1))), 408, "Timeout", Decision::Error),
            (Refusal::Upstream { cluster: cluster.clone(), error: UpstreamError::Connect("x".into()) },
                503, "ServiceUnavailable", Decision::Error),
            (Refusal::Upstream { cluster: cluster.clone(), error: UpstreamError::Timeout(Duration::from_secs(60)) },
                504, "Timeout", Decision::Error),
            (Refusal::Upstream { cluster: cluster.clone(), error: UpstreamError::Failed("secret detail".into()) },
                502, "InternalError", Decision::Error),
            (Refusal::DryRunUnreadable(cluster.clone()), 502, "InternalError", Decision::Error),
            (Refusal::Precondition(PreconditionError::Unsupported("application/cbor".into())),
                415, "UnsupportedMediaType", Decision::Error),
            (Refusal::Precondition(PreconditionError::Unreadable("JSON")), 400, "BadRequest", Decision::Error),
        ];
        for (refusal, code, reason, decision) in cases {
            let what = format!("{refusal:?}");
            assert_eq!(refusal.decision(), decision, "{what}");
            let audited = refusal.denied().is_some();
            assert_eq!(
                audited,
                matches!(refusal, Refusal::Forbidden { .. } | Refusal::WriteRefused { .. })
            );
            let resp = refusal.into_response();
            assert_eq!(resp.status().as_u16(), code, "{what}");
            let retry = resp.headers().get("retry-after").cloned();
            let v = body(resp).await;
            assert_eq!(v["kind"], "Status", "{what}");
            assert_eq!(v["reason"], reason, "{what}");
            assert_eq!(v["code"], code, "{what}");
            assert!(
                !v.to_string().contains("secret detail"),
                "{what}: internal detail leaked"
            );
            assert_eq!(retry.is_some(), code == 429, "{what}");
        }
    }
}
