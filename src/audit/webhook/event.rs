//! The event body. Field names are the Go proxy's (`audit.Log`), so receivers built for it keep
//! working; `decision`, `request_id`, `timestamp`, `request_body_omitted` and `impersonated_by`
//! are additions that
//! old receivers can ignore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

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

/// The same event as [`AuditEvent`], borrowed from the request: the proxy writes it once, at
/// request time, into the bytes the sender queues, instead of copying every field into an owned
/// event (about 20 allocations) and serialising that later. [`AuditEventView::write_json`]
/// writes the JSON serde_json writes for the owned event, byte for byte (tests hold the two
/// together).
pub struct AuditEventView<'a> {
    cluster_name: &'a str,
    user: &'a User,
    info: &'a RequestInfo,
    /// `None`: no body, written `{}`.
    request_body: Option<&'a Value>,
    decision: AuditDecision,
    request_id: &'a str,
    timestamp: &'a str,
    request_body_omitted: Option<&'a str>,
    impersonated_by: Option<&'a User>,
}

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
            user,
            info,
            request_body: None,
            decision,
            request_id,
            timestamp,
            request_body_omitted: None,
            impersonated_by: None,
        }
    }

    /// Records the person who acted as the event's user.
    pub fn impersonated_by(mut self, original: &'a User) -> Self {
        self.impersonated_by = Some(original);
        self
    }

    /// Sets the body from what [`request_body_field`] (or [`omitted_body`]) returned.
    pub fn with_body(mut self, body: &'a Value, omitted: Option<&'static str>) -> Self {
        self.request_body = Some(body);
        self.request_body_omitted = omitted;
        self
    }

    /// Appends the event as one JSON object: the fields of [`AuditEvent`] in its order, written
    /// by hand because serde_json escapes every key and string byte by byte, which was most of
    /// what an audited request cost over one without audit.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let (user, info) = (self.user, self.info);
        out.extend_from_slice(b"{\"cluster_name\":");
        json_str(out, self.cluster_name);
        out.push(b',');
        push_person(out, user);
        out.extend_from_slice(b",\"extra\":{");
        for (i, (key, values)) in user.extra.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, key);
            out.push(b':');
            json_strs(out, values.iter().map(String::as_str));
        }
        out.extend_from_slice(if info.is_resource_request {
            b"},\"is_resource_request\":true"
        } else {
            b"},\"is_resource_request\":false"
        });
        for (key, value) in [
            (&b",\"request_path\":"[..], info.path.as_str()),
            (b",\"verb\":", info.verb.as_str()),
            (b",\"api_prefix\":", info.api_prefix.as_str()),
            (b",\"api_group\":", info.api_group.as_str()),
            (b",\"api_version\":", info.api_version.as_str()),
            (b",\"namespace\":", info.namespace.as_str()),
            (b",\"resource\":", info.resource.as_str()),
            (b",\"sub_resource\":", info.subresource.as_str()),
            (b",\"name\":", info.name.as_str()),
        ] {
            out.extend_from_slice(key);
            json_str(out, value);
        }
        out.extend_from_slice(b",\"parts\":");
        json_strs(out, info.parts.iter().map(|p| p.as_str()));
        out.extend_from_slice(b",\"field_selector\":");
        json_str(out, info.field_selector.as_str());
        out.extend_from_slice(b",\"label_selector\":");
        json_str(out, info.label_selector.as_str());
        out.extend_from_slice(b",\"request_body\":");
        match self.request_body {
            Some(body) => json_value(out, body),
            None => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(match self.decision {
            AuditDecision::Allow => b",\"decision\":\"allow\"",
            AuditDecision::Deny => b",\"decision\":\"deny\"",
        });
        out.extend_from_slice(b",\"request_id\":");
        json_str(out, self.request_id);
        out.extend_from_slice(b",\"timestamp\":");
        json_str(out, self.timestamp);
        if let Some(omitted) = self.request_body_omitted {
            out.extend_from_slice(b",\"request_body_omitted\":");
            json_str(out, omitted);
        }
        if let Some(original) = self.impersonated_by {
            out.extend_from_slice(b",\"impersonated_by\":{");
            push_person(out, original);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// `"email":…,"uid":…,"groups":[…]`: the event's user, and the impersonator's.
fn push_person(out: &mut Vec<u8>, user: &User) {
    out.extend_from_slice(b"\"email\":");
    json_str(out, &user.name);
    out.extend_from_slice(b",\"uid\":");
    json_str(out, &user.uid);
    out.extend_from_slice(b",\"groups\":");
    json_strs(out, user.token_groups());
}

/// A JSON array of strings.
fn json_strs<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s str>) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, item);
    }
    out.push(b']');
}

/// Whether JSON needs `b` escaped inside a string (serde_json escapes exactly these).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` needs escaping, eight bytes at a time: most strings of an event are
/// a few to a few dozen bytes, too short for a vector loop to pay off.
fn any_needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    // The high bit of a byte is set where that byte of `x` is below `n` (n <= 0x80); a borrow
    // can only mark bytes above one that truly is, so "any" is exact.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut chunks = s.chunks_exact(8);
    let mut found = 0;
    for c in &mut chunks {
        let x = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        found |=
            below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1);
    }
    found != 0 || chunks.remainder().iter().any(|&b| needs_escape(b))
}

/// `s` as a JSON string, escaped as serde_json escapes it: `\"`, `\\`, the short forms
/// `\b \f \n \r \t`, `\u00xx` for the other control characters; everything else as it is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let mut plain = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !needs_escape(b) {
                continue;
            }
            out.extend_from_slice(&bytes[plain..i]);
            plain = i + 1;
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
        }
        out.extend_from_slice(&bytes[plain..]);
    }
    out.push(b'"');
}

/// A JSON value (the request body) through serde_json, `{}` in two bytes.
fn json_value(out: &mut Vec<u8>, value: &Value) {
    if value.as_object().is_some_and(Map::is_empty) {
        out.extend_from_slice(b"{}");
        return;
    }
    let start = out.len();
    // Writing a `Value` into a `Vec` cannot fail (its keys are strings, a Vec takes any
    // length); should it ever, the event keeps a valid `{}` rather than half a body.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
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

/// Now, as the events' `timestamp` field writes it (RFC 3339, UTC, to the nanosecond).
pub fn timestamp_now() -> String {
    let mut s = String::with_capacity(30);
    crate::text::push_rfc3339_utc(&mut s, OffsetDateTime::now_utc());
    s
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
                let mut b = Vec::new();
                view.write_json(&mut b);
                let a = serde_json::to_string(&event).unwrap();
                assert_eq!(
                    a,
                    String::from_utf8(b).unwrap(),
                    "{} body={with_body} impersonated={as_someone}",
                    info.path
                );
            }
        }
    }

    fn write_json(view: &AuditEventView<'_>) -> String {
        let mut out = b"x".to_vec();
        view.write_json(&mut out);
        String::from_utf8(out).expect("UTF-8").split_off(1)
    }

    proptest::proptest! {
        #[test]
        fn the_word_check_finds_what_the_byte_check_finds(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            proptest::prop_assert_eq!(any_needs_escape(&s), s.iter().any(|&b| needs_escape(b)));
        }

        #[test]
        fn any_text_is_written_as_serde_json_writes_it(
            name in proptest::prelude::any::<String>(),
            uid in "[\\x00-\\x7f]{0,6}",
            groups in proptest::collection::vec(proptest::prelude::any::<String>(), 0..4),
            extra in proptest::collection::btree_map(
                proptest::prelude::any::<String>(),
                proptest::collection::vec(proptest::prelude::any::<String>(), 0..3),
                0..3,
            ),
            cluster in proptest::prelude::any::<String>(),
            id in "[\\x00-\\x7f]{0,8}",
            segment in "([a-z\"]|%0[0-9a-f]|%1[0-9a-f]|%22|%5[cC]|%7[fF]|%C3%A9|%E2%80%AE){1,8}",
            deny in proptest::prelude::any::<bool>(),
        ) {
            let user = User { name, uid, groups, extra };
            let boss = User { name: segment.clone(), uid: "\\".into(), groups: vec!["a\"b".into()], ..User::default() };
            let path = format!("/api/v1/namespaces/{segment}/pods/{segment}/log");
            let query = format!("labelSelector={segment}&fieldSelector={segment}");
            let info = RequestInfo::parse("GET", &path, Some(&query), false).unwrap();
            let decision = if deny { AuditDecision::Deny } else { AuditDecision::Allow };
            let body = json!({"data": {(segment.as_str()): id.clone()}});
            let event = AuditEvent::new(&cluster, &user, &info, decision, &id)
                .with_body((body.clone(), None))
                .impersonated_by(&boss);
            let view = AuditEventView::new(&cluster, &user, &info, decision, &id, &event.timestamp)
                .with_body(&body, None)
                .impersonated_by(&boss);
            proptest::prop_assert_eq!(write_json(&view), serde_json::to_string(&event).unwrap());
        }
    }
}
