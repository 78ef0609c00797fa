//! The event body. Field names are the Go proxy's (`audit.Log`), so receivers built for it keep
//! working; `decision`, `request_id`, `timestamp`, `request_body_omitted` and `impersonated_by`
//! are additions that
//! old receivers can ignore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{authn::User, authz::request_info::RequestInfo};

/// `request_body_omitted` when the body is not JSON (YAML, protobuf, unparsable).
pub const OMITTED_NOT_JSON: &str = "not-json";
/// `request_body_omitted` when the body is larger than the configured limit.
pub const OMITTED_TOO_LARGE: &str = "too-large";
/// `request_body_omitted` when the body carries credentials (see [`carries_credentials`]).
pub const OMITTED_CREDENTIALS: &str = "credentials";

/// Request bodies that carry credentials and never reach an audit receiver, however small:
/// Secrets (data, tokens, keys, kubeconfigs), TokenReviews (the token under review), and
/// TokenRequests (`serviceaccounts/token`, whose answer is a token and whose request names the
/// audience and the object it is bound to), in any API version.
pub fn carries_credentials(info: &RequestInfo) -> bool {
    matches!(
        (
            info.api_group.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
        ),
        ("", "secrets", _)
            | ("", "serviceaccounts", "token")
            | ("authentication.k8s.io", "tokenreviews" | "tokenrequests", _)
    )
}

/// Whether the proxy let the request through. Denied requests are audited too, so failed
/// attempts reach the SIEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDecision {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// First path segment of the proxy URL.
    pub cluster_name: String,
    /// The user name (OIDC username claim with its prefix).
    pub email: String,
    pub uid: String,
    /// Groups from the token, without `system:authenticated`.
    pub groups: Vec<String>,
    /// Never `null`: an empty object when the user has no extras.
    pub extra: BTreeMap<String, Vec<String>>,
    pub is_resource_request: bool,
    /// The Kubernetes path, without the cluster prefix.
    pub request_path: String,
    pub verb: String,
    pub api_prefix: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub sub_resource: String,
    pub name: String,
    pub parts: Vec<String>,
    pub field_selector: String,
    pub label_selector: String,
    /// The request body as raw JSON, `{}` when empty or omitted.
    pub request_body: Value,
    pub decision: AuditDecision,
    /// The `Audit-ID` also sent upstream and logged.
    pub request_id: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// Why `request_body` is `{}` although the request had one: `not-json`, `too-large` or
    /// `credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_omitted: Option<String>,
    /// Who asked, when they acted as the user above (`kubectl --as`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<Impersonator>,
}

/// The person behind an impersonated request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impersonator {
    pub email: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The owned builder: tests build events with it, and hold [`AuditEventView`] to its JSON. The
/// proxy itself builds only the view.
#[cfg(test)]
impl AuditEvent {
    /// The event for a request to `cluster`, stamped now, with an empty body; add the body with
    /// [`AuditEvent::with_body`].
    pub fn new(
        cluster: &str,
        user: &User,
        info: &RequestInfo,
        decision: AuditDecision,
        request_id: &str,
    ) -> Self {
        AuditEvent {
            cluster_name: cluster.to_string(),
            email: user.name.clone(),
            uid: user.uid.clone(),
            groups: user.token_groups().map(str::to_string).collect(),
            extra: user.extra.clone(),
            is_resource_request: info.is_resource_request,
            request_path: info.path.clone(),
            verb: info.verb.to_string(),
            api_prefix: info.api_prefix.to_string(),
            api_group: info.api_group.to_string(),
            api_version: info.api_version.to_string(),
            namespace: info.namespace.to_string(),
            resource: info.resource.to_string(),
            sub_resource: info.subresource.to_string(),
            name: info.name.to_string(),
            parts: info.parts.iter().map(ToString::to_string).collect(),
            field_selector: info.field_selector.to_string(),
            label_selector: info.label_selector.to_string(),
            request_body: empty_object(),
            decision,
            request_id: request_id.to_string(),
            timestamp: timestamp_now(),
            request_body_omitted: None,
            impersonated_by: None,
        }
    }

    /// Records the person who acted as the event's user.
    pub fn impersonated_by(mut self, original: &User) -> Self {
        self.impersonated_by = Some(Impersonator {
            email: original.name.clone(),
            uid: original.uid.clone(),
            groups: original.token_groups().map(str::to_string).collect(),
        });
        self
    }

    /// Sets the body from what [`request_body_field`] (or [`omitted_body`]) returned.
    pub fn with_body(mut self, (body, omitted): (Value, Option<&'static str>)) -> Self {
        self.request_body = body;
        self.request_body_omitted = omitted.map(str::to_string);
        self
    }
}

/// The same event as [`AuditEvent`], borrowed from the request: the proxy serialises it once, at
/// request time, into the bytes the sender queues, instead of copying every field into an owned
/// event (about 20 allocations) and serialising that later. Field for field the same JSON (a test
/// holds the two together).
#[derive(Serialize)]
pub struct AuditEventView<'a> {
    cluster_name: &'a str,
    email: &'a str,
    uid: &'a str,
    groups: TokenGroups<'a>,
    extra: &'a BTreeMap<String, Vec<String>>,
    is_resource_request: bool,
    request_path: &'a str,
    verb: &'a str,
    api_prefix: &'a str,
    api_group: &'a str,
    api_version: &'a str,
    namespace: &'a str,
    resource: &'a str,
    sub_resource: &'a str,
    name: &'a str,
    parts: &'a [crate::authz::request_info::ShortStr],
    field_selector: &'a str,
    label_selector: &'a str,
    request_body: &'a Value,
    decision: AuditDecision,
    request_id: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body_omitted: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_by: Option<ImpersonatorView<'a>>,
}

#[derive(Serialize)]
struct ImpersonatorView<'a> {
    email: &'a str,
    uid: &'a str,
    groups: TokenGroups<'a>,
}

/// A user's groups as the token gave them (see [`User::token_groups`]).
struct TokenGroups<'a>(&'a User);

impl Serialize for TokenGroups<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.token_groups())
    }
}

static EMPTY_OBJECT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(empty_object);

impl<'a> AuditEventView<'a> {
    pub fn new(
        cluster: &'a str,
        user: &'a User,
        info: &'a RequestInfo,
        decision: AuditDecision,
        request_id: &'a str,
        timestamp: &'a str,
    ) -> Self {
        AuditEventView {
            cluster_name: cluster,
            email: &user.name,
            uid: &user.uid,
            groups: TokenGroups(user),
            extra: &user.extra,
            is_resource_request: info.is_resource_request,
            request_path: &info.path,
            verb: info.verb.as_str(),
            api_prefix: info.api_prefix.as_str(),
            api_group: info.api_group.as_str(),
            api_version: info.api_version.as_str(),
            namespace: info.namespace.as_str(),
            resource: info.resource.as_str(),
            sub_resource: info.subresource.as_str(),
            name: info.name.as_str(),
            parts: &info.parts,
            field_selector: info.field_selector.as_str(),
            label_selector: info.label_selector.as_str(),
            request_body: &EMPTY_OBJECT,
            decision,
            request_id,
            timestamp,
            request_body_omitted: None,
            impersonated_by: None,
        }
    }

    /// Records the person who acted as the event's user.
    pub fn impersonated_by(mut self, original: &'a User) -> Self {
        self.impersonated_by = Some(ImpersonatorView {
            email: &original.name,
            uid: &original.uid,
            groups: TokenGroups(original),
        });
        self
    }

    /// Sets the body from what [`request_body_field`] (or [`omitted_body`]) returned.
    pub fn with_body(mut self, body: &'a Value, omitted: Option<&'static str>) -> Self {
        self.request_body = body;
        self.request_body_omitted = omitted;
        self
    }
}

/// `application/json`, or any `application/...+json` (the Kubernetes patch types), parameters
/// ignored. `application/apply-patch+yaml` and protobuf are not JSON.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || (subtype.len() > 5 && subtype.as_bytes()[subtype.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

/// Decides from the headers alone whether the body is worth buffering for the audit event:
/// `None` means buffer up to `limit` bytes and call [`request_body_field`]; `Some(reason)` means
/// stream the body untouched and record [`omitted_body`]`(reason)`.
pub fn precheck_body(
    content_type: Option<&str>,
    content_length: Option<u64>,
    limit: usize,
) -> Option<&'static str> {
    if content_length == Some(0) {
        return None;
    }
    if !is_json_content_type(content_type) {
        return Some(OMITTED_NOT_JSON);
    }
    match content_length {
        Some(n) if n > limit as u64 => Some(OMITTED_TOO_LARGE),
        _ => None,
    }
}

/// The `request_body` value and the omission marker for a buffered body: the parsed JSON when
/// the content type is JSON, the body parses and is at most `limit` bytes; else `{}` and why.
/// An empty body is `{}` with no marker, as in the Go proxy.
pub fn request_body_field(
    content_type: Option<&str>,
    body: &[u8],
    limit: usize,
) -> (Value, Option<&'static str>) {
    if body.is_empty() {
        return (empty_object(), None);
    }
    if !is_json_content_type(content_type) {
        return omitted_body(OMITTED_NOT_JSON);
    }
    if body.len() > limit {
        return omitted_body(OMITTED_TOO_LARGE);
    }
    // serde_json bounds nesting depth, so a hostile body cannot exhaust the stack.
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => (value, None),
        Err(_) => omitted_body(OMITTED_NOT_JSON),
    }
}

/// `{}` with the marker `reason`.
pub fn omitted_body(reason: &'static str) -> (Value, Option<&'static str>) {
    (empty_object(), Some(reason))
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Now, as the events' `timestamp` field writes it.
pub fn timestamp_now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authz::request_info::ShortStr;

    const LIMIT: usize = 64;

    #[test]
    fn json_content_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/strategic-merge-patch+json",
        ] {
            assert!(is_json_content_type(Some(ct)), "{ct}");
        }
        for ct in [
            "application/apply-patch+yaml",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "text/json",
            "application/+json",
            "json",
            "application/éjson",
            "",
        ] {
            assert!(!is_json_content_type(Some(ct)), "{ct}");
        }
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn body_included_only_when_json_and_small() {
        let body = br#"{"kind":"Pod","metadata":{"name":"p"}}"#;
        assert_eq!(
            request_body_field(Some("application/json"), body, LIMIT),
            (json!({"kind": "Pod", "metadata": {"name": "p"}}), None)
        );
        assert_eq!(
            request_body_field(Some("application/json"), b"", LIMIT),
            (json!({}), None)
        );
        assert_eq!(request_body_field(None, b"", LIMIT), (json!({}), None));
        assert_eq!(
            request_body_field(Some("application/yaml"), b"kind: Pod", LIMIT),
            (json!({}), Some(OMITTED_NOT_JSON))
        );
        assert_eq!(
            request_body_field(Some("application/json"), b"{not json", LIMIT),
            (json!({}), Some(OMITTED_NOT_JSON))
        );
        assert_eq!(
            request_body_field(None, body, LIMIT),
            (json!({}), Some(OMITTED_NOT_JSON))
        );
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(LIMIT));
        assert_eq!(
            request_body_field(Some("application/json"), big.as_bytes(), LIMIT),
            (json!({}), Some(OMITTED_TOO_LARGE))
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            request_body_field(Some("application/json"), deep.as_bytes(), 1 << 20),
            (json!({}), Some(OMITTED_NOT_JSON))
        );
    }

    #[test]
    fn precheck_from_headers() {
        assert_eq!(precheck_body(Some("application/json"), Some(10), LIMIT), None);
        assert_eq!(precheck_body(Some("application/json"), None, LIMIT), None);
        assert_eq!(precheck_body(None, Some(0), LIMIT), None);
        assert_eq!(
            precheck_body(Some("application/json"), Some(LIMIT as u64 + 1), LIMIT),
            Some(OMITTED_TOO_LARGE)
        );
        assert_eq!(
            precheck_body(Some("application/vnd.kubernetes.protobuf"), Some(10), LIMIT),
            Some(OMITTED_NOT_JSON)
        );
    }

    fn user() -> User {
        User {
            name: "oidc:ann@example.com".into(),
            uid: "sub-123".into(),
            groups: vec!["c1:developer".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    fn info() -> RequestInfo {
        RequestInfo {
            is_resource_request: true,
            path: "/api/v1/namespaces/ns1/pods/p1/log".into(),
            verb: "get".into(),
            api_prefix: "api".into(),
            api_group: ShortStr::new(),
            api_version: "v1".into(),
            namespace: "ns1".into(),
            resource: "pods".into(),
            subresource: "log".into(),
            name: "p1".into(),
            parts: vec!["pods".into(), "p1".into(), "log".into()],
            field_selector: ShortStr::new(),
            label_selector: ShortStr::new(),
        }
    }

    #[test]
    fn serialized_field_names_and_values() {
        let ev = AuditEvent::new("c1", &user(), &info(), AuditDecision::Allow, "req-1");
        let v = serde_json::to_value(&ev).expect("serializes");
        let obj = v.as_object().expect("object");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected = vec![
            "cluster_name",
            "email",
            "uid",
            "groups",
            "extra",
            "is_resource_request",
            "request_path",
            "verb",
            "api_prefix",
            "api_group",
            "api_version",
            "namespace",
            "resource",
            "sub_resource",
            "name",
            "parts",
            "field_selector",
            "label_selector",
            "request_body",
            "decision",
            "request_id",
            "timestamp",
        ];
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(v["groups"], json!(["c1:developer"]));
        assert_eq!(v["extra"], json!({}));
        assert_eq!(v["request_path"], "/api/v1/namespaces/ns1/pods/p1/log");
        assert_eq!(v["sub_resource"], "log");
        assert_eq!(v["request_body"], json!({}));
        assert_eq!(v["decision"], "allow");
        let ts = v["timestamp"].as_str().expect("timestamp is a string");
        assert!(ts.ends_with('Z'), "{ts}");
        let b = ts.as_bytes();
        assert!(
            b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':',
            "{ts}"
        );
        assert!(ts[..4].parse::<u16>().is_ok_and(|y| y >= 2024), "{ts}");

        let denied = AuditEvent::new("c1", &user(), &info(), AuditDecision::Deny, "req-2")
            .with_body(omitted_body(OMITTED_TOO_LARGE));
        let v = serde_json::to_value(&denied).expect("serializes");
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["request_body_omitted"], "too-large");
        assert_eq!(v["request_body"], json!({}));
    }

    #[test]
    fn the_borrowed_view_writes_the_same_json_as_the_event() {
        let user = User {
            name: "alice@example.com".into(),
            uid: "u-1".into(),
            groups: vec!["oidc:dev\"ops".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("acr".to_string(), vec!["mfa".to_string(), "x\ny".to_string()])]),
        };
        let boss = User {
            name: "boss".into(),
            groups: vec!["admins".into()],
            ..User::default()
        };
        let infos = [
            RequestInfo::parse("GET", "/api/v1/namespaces/dev/pods/p1/log", None, false).unwrap(),
            RequestInfo::parse(
                "GET",
                "/apis/apps/v1/deployments",
                Some("labelSelector=a%3Db&fieldSelector=x"),
                false,
            )
            .unwrap(),
            RequestInfo::parse("POST", "/api/v1/namespaces/d%C3%A9v/configmaps", None, false).unwrap(),
        ];
        let body = json!({"kind": "ConfigMap", "data": {"k": "v\u{1}"}});
        for info in &infos {
            for (with_body, as_someone) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut event = AuditEvent::new("c1", &user, info, AuditDecision::Allow, "req-1");
                let stamp = event.timestamp.clone();
                let mut view = AuditEventView::new("c1", &user, info, AuditDecision::Allow, "req-1", &stamp);
                if with_body {
                    event = event.with_body((body.clone(), Some(OMITTED_TOO_LARGE)));
                    view = view.with_body(&body, Some(OMITTED_TOO_LARGE));
                }
                if as_someone {
                    event = event.impersonated_by(&boss);
                    view = view.impersonated_by(&boss);
                }
                let (a, b) = (
                    serde_json::to_string(&event).unwrap(),
                    serde_json::to_string(&view).unwrap(),
                );
                assert_eq!(a, b, "{} body={with_body} impersonated={as_someone}", info.path);
            }
        }
    }
}
