//! The JSON of the self-reviews: what is read from a request and what is written back, in the
//! shapes of `authorization.k8s.io/v1` and `authentication.k8s.io/v1`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::authz::rbac::{NonResourceRule, ResourceRule};

/// The request body, as much of it as matters. Unknown fields are ignored, as kube-apiserver
/// does (it only warns).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", bound = "S: DeserializeOwned + Default")]
pub(super) struct Review<S> {
    #[serde(default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) api_version: Option<String>,
    #[serde(default)]
    pub(super) metadata: Option<Map<String, Value>>,
    #[serde(default = "Default::default", deserialize_with = "null_as_default")]
    pub(super) spec: S,
}

/// The answer: the object with its `status` filled in.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Answer<'a, S, T> {
    pub(super) kind: &'a str,
    pub(super) api_version: &'a str,
    pub(super) metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) spec: Option<&'a S>,
    pub(super) status: T,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct Empty {}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccessReviewSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) resource_attributes: Option<ResourceAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) non_resource_attributes: Option<NonResourceAttributes>,
}

/// `authorization.k8s.io/v1` ResourceAttributes; every field is `omitempty` in Go.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceAttributes {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) namespace: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) verb: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) group: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) resource: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) subresource: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) name: String,
    /// Echoed, not evaluated: RBAC does not look at selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) field_selector: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) label_selector: Option<Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub(super) struct NonResourceAttributes {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) path: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(super) verb: String,
}

/// `SubjectAccessReviewStatus`. `denied` stays false (omitted): RBAC has no explicit deny, and
/// the proxy's RBAC is the only authorizer. No `reason`: the snapshot does not keep which
/// binding allowed, and kubectl prints only the reason of a denial, which RBAC never gives.
#[derive(Serialize)]
pub(super) struct AccessReviewStatus {
    pub(super) allowed: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RulesReviewSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) namespace: String,
}

/// `SubjectRulesReviewStatus`: the lists are always present, empty or not.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RulesReviewStatus {
    pub(super) resource_rules: Vec<ResourceRule>,
    pub(super) non_resource_rules: Vec<NonResourceRule>,
    pub(super) incomplete: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubjectReviewStatus<'a> {
    pub(super) user_info: UserInfo<'a>,
}

/// `authentication.k8s.io/v1` UserInfo; every field is `omitempty` in Go.
#[derive(Serialize)]
pub(super) struct UserInfo<'a> {
    #[serde(skip_serializing_if = "is_empty_str")]
    pub(super) username: &'a str,
    #[serde(skip_serializing_if = "is_empty_str")]
    pub(super) uid: &'a str,
    #[serde(skip_serializing_if = "is_empty_list")]
    pub(super) groups: &'a [String],
    #[serde(skip_serializing_if = "is_empty_map")]
    pub(super) extra: &'a BTreeMap<String, Vec<String>>,
}

fn is_empty_str(s: &&str) -> bool {
    s.is_empty()
}

fn is_empty_list(l: &&[String]) -> bool {
    l.is_empty()
}

fn is_empty_map(m: &&BTreeMap<String, Vec<String>>) -> bool {
    m.is_empty()
}

/// Go decodes `null` into a zero value; so do we.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
