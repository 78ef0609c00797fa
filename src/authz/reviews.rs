//! The self-review APIs, answered by the proxy from its own decision and the user it
//! authenticated, so that `kubectl auth can-i`, `kubectl auth can-i --list` and
//! `kubectl auth whoami` tell the truth about what the proxy allows. Forwarded, they would be
//! answered by the API server about the proxy's own credentials (or the impersonated user under
//! the cluster's RBAC alone), which is not what the proxy decides.
//!
//! Shapes and errors follow kube-apiserver's REST storage for these kinds
//! (`pkg/registry/authorization/selfsubject{access,rules}review/rest.go`,
//! `pkg/registry/authentication/selfsubjectreview/rest.go`) and the `authorization.k8s.io/v1`
//! and `authentication.k8s.io/v1` JSON types. The answer is a `201 Created` with the object.

pub mod protobuf;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::rbac::{Decision, Snapshot};
use super::request_info::RequestInfo;
use wire::{
    AccessReviewSpec, AccessReviewStatus, Answer, Empty, Review, RulesReviewSpec, RulesReviewStatus,
    SubjectReviewStatus, UserInfo,
};

/// Which self-review a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfReview {
    /// `authorization.k8s.io` SelfSubjectAccessReview: may I do this one thing?
    AccessReview,
    /// `authorization.k8s.io` SelfSubjectRulesReview: what may I do in this namespace?
    RulesReview,
    /// `authentication.k8s.io` SelfSubjectReview: who am I?
    SubjectReview,
}

impl SelfReview {
    /// The object's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::AccessReview => "SelfSubjectAccessReview",
            Self::RulesReview => "SelfSubjectRulesReview",
            Self::SubjectReview => "SelfSubjectReview",
        }
    }
}

/// The authenticated user, as the proxy will present it upstream.
#[derive(Debug, Clone, Copy)]
pub struct UserView<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    /// All groups, `system:authenticated` included.
    pub groups: &'a [String],
    pub extra: &'a BTreeMap<String, Vec<String>>,
}

/// Why a self-review gets no answer; map to a Kubernetes `Status` with [`code`](Self::code) and
/// [`reason`](Self::reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The body is not a review of the endpoint's kind (400 `BadRequest`).
    #[error("{0}")]
    BadRequest(String),
    /// The review is well-formed but asks nothing answerable (422 `Invalid`).
    #[error("{0}")]
    Invalid(String),
    /// The answer could not be encoded (500 `InternalError`); never expected.
    #[error("{0}")]
    Internal(String),
}

impl ReviewError {
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Invalid(_) => 422,
            Self::Internal(_) => 500,
        }
    }

    /// The `reason` of the Status.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::Invalid(_) => "Invalid",
            Self::Internal(_) => "InternalError",
        }
    }
}

const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The self-review a request is, if it is one: `create` of the cluster-scoped collection in a
/// version kube serves (or served) it in. Anything else (other verbs, a namespace or name in the
/// path, unknown versions) is `None` and goes the ordinary way: authorized, then forwarded.
pub fn is_self_review(info: &RequestInfo) -> Option<SelfReview> {
    if !info.is_resource_request
        || info.verb != "create"
        || !info.namespace.is_empty()
        || !info.name.is_empty()
        || !info.subresource.is_empty()
    {
        return None;
    }
    match (
        info.api_group.as_str(),
        info.api_version.as_str(),
        info.resource.as_str(),
    ) {
        (AUTHORIZATION_GROUP, "v1" | "v1beta1", "selfsubjectaccessreviews") => Some(SelfReview::AccessReview),
        (AUTHORIZATION_GROUP, "v1" | "v1beta1", "selfsubjectrulesreviews") => Some(SelfReview::RulesReview),
        (AUTHENTICATION_GROUP, "v1" | "v1beta1" | "v1alpha1", "selfsubjectreviews") => {
            Some(SelfReview::SubjectReview)
        }
        _ => None,
    }
}

/// Answers the self-review `kind` posted to the endpoint `request` describes (its group and
/// version become the answer's `apiVersion`) with the JSON `body`, for `user`, from `snapshot`:
/// the status code (201) and the JSON of the answer.
pub fn answer(
    kind: SelfReview,
    request: &RequestInfo,
    body: &[u8],
    user: &UserView<'_>,
    snapshot: &Snapshot,
) -> Result<(u16, Vec<u8>), ReviewError> {
    let api_version = format!("{}/{}", request.api_group, request.api_version);
    let json = match kind {
        SelfReview::AccessReview => {
            let review: Review<AccessReviewSpec> = decode(kind, &api_version, body)?;
            let spec = review.spec;
            let info = access_request(kind, &spec)?;
            let allowed = snapshot.authorize(user.name, user.groups, &info) == Decision::Allow;
            encode(&Answer {
                kind: kind.kind(),
                api_version: &api_version,
                metadata: review.metadata.unwrap_or_default(),
                spec: Some(&spec),
                status: AccessReviewStatus { allowed },
            })?
        }
        SelfReview::RulesReview => {
            let review: Review<RulesReviewSpec> = decode(kind, &api_version, body)?;
            if review.spec.namespace.is_empty() {
                return Err(ReviewError::BadRequest("no namespace on request".to_owned()));
            }
            let (resource_rules, non_resource_rules) =
                snapshot.rules_for(user.name, user.groups, &review.spec.namespace);
            // kube answers with a new object: the request's metadata and spec are not echoed.
            encode(&Answer {
                kind: kind.kind(),
                api_version: &api_version,
                metadata: Map::new(),
                spec: Some(&Empty {}),
                status: RulesReviewStatus {
                    resource_rules,
                    non_resource_rules,
                    incomplete: false,
                },
            })?
        }
        SelfReview::SubjectReview => {
            // Read only to reject what is not a SelfSubjectReview; it has no spec.
            let _: Review<Empty> = decode(kind, &api_version, body)?;
            encode(&Answer::<Empty, _> {
                kind: kind.kind(),
                api_version: &api_version,
                metadata: Map::new(),
                spec: None,
                status: SubjectReviewStatus {
                    user_info: UserInfo {
                        username: user.name,
                        uid: user.uid,
                        groups: user.groups,
                        extra: user.extra,
                    },
                },
            })?
        }
    };
    Ok((201, json))
}

/// Decodes `body` as a review of `kind` posted to `api_version`. A missing `kind` or
/// `apiVersion` defaults to the endpoint's, as kube's decoder does; a different one is refused.
fn decode<S>(kind: SelfReview, api_version: &str, body: &[u8]) -> Result<Review<S>, ReviewError>
where
    S: DeserializeOwned + Default,
{
    let bad = |e: serde_json::Error| {
        ReviewError::BadRequest(format!("the body is not a valid {}: {e}", kind.kind()))
    };
    // An object first: serde would read a struct from an array too, Go does not.
    let object: Map<String, Value> = serde_json::from_slice(body).map_err(bad)?;
    let review: Review<S> = serde_json::from_value(Value::Object(object)).map_err(bad)?;
    if let Some(got) = review
        .api_version
        .as_deref()
        .filter(|v| !v.is_empty() && *v != api_version)
    {
        return Err(ReviewError::BadRequest(format!(
            "the API version in the data ({got}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(got) = review
        .kind
        .as_deref()
        .filter(|k| !k.is_empty() && *k != kind.kind())
    {
        return Err(ReviewError::BadRequest(format!(
            "not a {}: the kind in the data is {got:?}",
            kind.kind()
        )));
    }
    Ok(review)
}

fn encode<T: Serialize>(answer: &T) -> Result<Vec<u8>, ReviewError> {
    serde_json::to_vec(answer).map_err(|e| ReviewError::Internal(format!("encoding the review: {e}")))
}

/// The request `spec` asks about, as kube's `ResourceAttributesFrom` and
/// `NonResourceAttributesFrom` build the authorizer's attributes.
fn access_request(kind: SelfReview, spec: &AccessReviewSpec) -> Result<RequestInfo, ReviewError> {
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(a), None) => Ok(RequestInfo {
            is_resource_request: true,
            verb: a.verb.as_str().into(),
            api_group: a.group.as_str().into(),
            // An empty version matches all versions; RBAC does not look at versions anyway.
            api_version: if a.version.is_empty() {
                "*".into()
            } else {
                a.version.as_str().into()
            },
            namespace: a.namespace.as_str().into(),
            resource: a.resource.as_str().into(),
            subresource: a.subresource.as_str().into(),
            name: a.name.as_str().into(),
            ..RequestInfo::default()
        }),
        (None, Some(a)) => Ok(RequestInfo {
            is_resource_request: false,
            path: a.path.clone(),
            verb: a.verb.as_str().into(),
            ..RequestInfo::default()
        }),
        _ => Err(ReviewError::Invalid(format!(
            "{}.{AUTHORIZATION_GROUP} \"\" is invalid: spec: exactly one of nonResourceAttributes or \
             resourceAttributes must be specified",
            kind.kind()
        ))),
    }
}
