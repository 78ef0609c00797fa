//! The real write of a checked write must change the object its dry run saw, or nothing.
//!
//! Between the dry run and the real write the object can be deleted (a PUT or an apply would
//! then create it, which the dry run said it would not), replaced, or changed (a patch would
//! then produce something else than what was checked). The proxy cannot close that window, so
//! kube-apiserver must refuse the real write when the window was used: the write carries the
//! uid and resourceVersion of the object the dry run answered with, as kube-apiserver reads them
//! (staging apiserver, 1.35):
//!
//! | write | precondition | object gone | replaced | changed |
//! |---|---|---|---|---|
//! | PUT (JSON, YAML as JSON) | body `metadata.uid` (a storage precondition) + `resourceVersion` | 409 | 409 | 409 |
//! | merge / strategic merge patch | `metadata.uid` + `metadata.resourceVersion` in the patch | 404 | 409 | 409 |
//! | JSON patch | `test` ops on `/metadata/uid` and `/metadata/resourceVersion` first | 404 | 422 | 422 |
//! | server-side apply | `metadata.uid` + `metadata.resourceVersion` in the configuration | 409 | 409 | 409 |
//!
//! A resourceVersion alone would not do for PUT and apply: on an object that is gone kube
//! creates, ignoring it; the uid is what refuses. A write that the dry run said creates (201)
//! carries nothing: nothing existed to be replaced, and a create of a name taken in between
//! fails by itself. Bodies the proxy cannot rewrite without re-implementing their codec
//! (protobuf, CBOR) are refused for checked writes (415); kubectl and client-go write JSON.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

/// Why a checked write cannot carry its precondition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreconditionError {
    #[error(
        "a write checked by this proxy must be JSON or YAML (got {0:?}): its real write has to carry \
         the dry run's uid and resourceVersion"
    )]
    Unsupported(String),
    #[error("the request body is not valid {0}")]
    Unreadable(&'static str),
    /// The dry run answered 200 with no uid or resourceVersion: nothing to hold the write to.
    #[error("the dry run's answer names no uid and resourceVersion")]
    NoVersion,
}

/// The uid and resourceVersion of the object a dry run said the write changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub uid: String,
    pub resource_version: String,
}

impl Seen {
    /// From the dry run's answer (an object).
    pub fn of(object: &Value) -> Result<Seen, PreconditionError> {
        let field = |name: &str| {
            object
                .pointer(&format!("/metadata/{name}"))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        match (field("uid"), field("resourceVersion")) {
            (Some(uid), Some(resource_version)) => Ok(Seen {
                uid,
                resource_version,
            }),
            _ => Err(PreconditionError::NoVersion),
        }
    }
}

/// The media type of a body: the bytes before `;`, trimmed, lower-cased.
fn media_type(headers: &HeaderMap) -> String {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The media types whose bodies [`hold_to`] rewrites.
const HELD: [&str; 7] = [
    "",
    "application/json",
    "application/yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Whether a write with these headers can be held to what its dry run saw.
pub fn supported(headers: &HeaderMap) -> Result<(), PreconditionError> {
    let media = media_type(headers);
    match HELD.contains(&media.as_str()) {
        true => Ok(()),
        false => Err(PreconditionError::Unsupported(media)),
    }
}

/// Whether a checked write of `verb` is held to the object its dry run saw (an update or patch).
pub fn held(verb: &str) -> bool {
    matches!(verb, "update" | "patch")
}

/// The body of a held write as both its dry run and its real write will carry it: refused when
/// its media type cannot be held; YAML that is not JSON rewritten as JSON (an `application/yaml`
/// PUT then says `application/json`). Before the dry run, so what kube-apiserver is asked to
/// check is exactly what it is asked to write: YAML readers differ (merge keys, duplicate keys),
/// and a body read one way by the dry run and another way by the proxy's re-encoding could be
/// checked as one thing and written as another.
pub fn prepare(headers: &mut HeaderMap, body: Bytes) -> Result<Bytes, PreconditionError> {
    supported(headers)?;
    let media = media_type(headers);
    if !matches!(
        media.as_str(),
        "application/yaml" | "application/apply-patch+yaml"
    ) {
        return Ok(body);
    }
    let json = if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
        body
    } else {
        let object: Value =
            serde_saphyr::from_slice(&body).map_err(|_| PreconditionError::Unreadable("YAML"))?;
        Bytes::from(serde_json::to_vec(&object).map_err(|_| PreconditionError::Unreadable("YAML"))?)
    };
    if media == "application/yaml" {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(json.len()));
    Ok(json)
}

/// `body` (as [`prepare`] left it) rewritten to carry `seen` as its precondition; `headers` (Content-Type,
/// Content-Length) follow the new body.
pub fn hold_to(headers: &mut HeaderMap, body: &[u8], seen: &Seen) -> Result<Bytes, PreconditionError> {
    let media = media_type(headers);
    let out = match media.as_str() {
        "application/json-patch+json" => {
            let ops: Value =
                serde_json::from_slice(body).map_err(|_| PreconditionError::Unreadable("JSON"))?;
            let Value::Array(ops) = ops else {
                return Err(PreconditionError::Unreadable("JSON patch"));
            };
            let mut held = vec![
                json!({"op": "test", "path": "/metadata/uid", "value": seen.uid}),
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": seen.resource_version}),
            ];
            held.extend(ops);
            serde_json::to_vec(&Value::Array(held))
        }
        // "" is what kube-apiserver reads as JSON for a PUT without a Content-Type.
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        // [`prepare`] made the body JSON, which is YAML too: an apply keeps its media type (an
        // `application/yaml` PUT became `application/json`).
        | "application/apply-patch+yaml" => {
            let object = serde_json::from_slice(body).map_err(|_| PreconditionError::Unreadable("JSON"))?;
            serde_json::to_vec(&with_metadata(object, seen)?)
        }
        _ => return Err(PreconditionError::Unsupported(media)),
    }
    .map_err(|_| PreconditionError::Unreadable("JSON"))?;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Bytes::from(out))
}

fn with_metadata(mut object: Value, seen: &Seen) -> Result<Value, PreconditionError> {
    let Some(map) = object.as_object_mut() else {
        return Err(PreconditionError::Unreadable("object"));
    };
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(PreconditionError::Unreadable("object"));
    };
    metadata.insert("uid".into(), seen.uid.clone().into());
    metadata.insert("resourceVersion".into(), seen.resource_version.clone().into());
    Ok(object)
}

/// Debug builds only, for the end-to-end ring: `KOP_E2E_PAUSE_HELD_WRITE=<ms>:<name prefix>`
/// holds back the real write of a held write to an object whose name starts with the prefix
/// for that long after its dry run, so a test can delete or replace the object in between.
/// Release builds have no such pause.
#[cfg(debug_assertions)]
pub async fn e2e_pause(name: &str) {
    use std::sync::OnceLock;
    static PAUSE: OnceLock<Option<(std::time::Duration, String)>> = OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        let v = std::env::var("KOP_E2E_PAUSE_HELD_WRITE").ok()?;
        let (ms, prefix) = v.split_once(':')?;
        Some((
            std::time::Duration::from_millis(ms.parse().ok()?),
            prefix.to_string(),
        ))
    });
    if let Some((wait, prefix)) = pause
        && name.starts_with(prefix.as_str())
    {
        tokio::time::sleep(*wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Seen {
        Seen {
            uid: "u-1".into(),
            resource_version: "42".into(),
        }
    }

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !ct.is_empty() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
        h
    }

    fn held(ct: &str, body: &str) -> (HeaderMap, Value) {
        let mut h = headers(ct);
        let body = prepare(&mut h, Bytes::from(body.to_string())).expect(ct);
        let out = hold_to(&mut h, &body, &seen()).expect(ct);
        assert_eq!(h[header::CONTENT_LENGTH], out.len().to_string().as_str());
        (h, serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn objects_carry_the_uid_and_resource_version_they_were_checked_against() {
        for ct in [
            "",
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            let (h, v) = held(
                ct,
                r#"{"kind":"Role","metadata":{"name":"r","resourceVersion":"42"},"rules":[]}"#,
            );
            assert_eq!(v["metadata"]["uid"], "u-1", "{ct}");
            assert_eq!(v["metadata"]["resourceVersion"], "42", "{ct}");
            assert_eq!(v["metadata"]["name"], "r", "{ct}");
            assert_eq!(v["rules"], json!([]), "{ct}");
            let ct_after = h
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(ct_after.as_deref().unwrap_or(""), ct, "the media type stays");
        }
        // A patch without metadata gets it.
        let (_, v) = held("application/merge-patch+json", r#"{"rules":null}"#);
        assert_eq!(v["metadata"], json!({"uid": "u-1", "resourceVersion": "42"}));
    }

    #[test]
    fn yaml_bodies_are_sent_as_the_same_object_in_json() {
        let yaml = "kind: Role\nmetadata:\n  name: r\nrules:\n- verbs: [get]\n  resources: [pods]\n  apiGroups: ['']\n";
        let (h, v) = held("application/yaml", yaml);
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(v["rules"][0]["verbs"], json!(["get"]));
        assert_eq!(v["metadata"]["uid"], "u-1");
        let (h, v) = held("application/apply-patch+yaml", yaml);
        assert_eq!(
            h[header::CONTENT_TYPE],
            "application/apply-patch+yaml",
            "JSON is YAML"
        );
        assert_eq!(v["metadata"]["resourceVersion"], "42");
    }

    #[test]
    fn yaml_is_made_json_before_the_dry_run_so_both_writes_read_the_same_object() {
        // A merge key: YAML readers disagree on whether it or the key before it wins. The dry
        // run and the real write both get the proxy's reading, as JSON.
        let yaml = "rules:\n- verbs: ['*']\n  <<: {verbs: [get]}\n";
        let mut h = headers("application/apply-patch+yaml");
        let body = prepare(&mut h, Bytes::from(yaml)).unwrap();
        let once: Value = serde_json::from_slice(&body).expect("JSON before the dry run");
        assert_eq!(h[header::CONTENT_LENGTH], body.len().to_string().as_str());
        let out = hold_to(&mut h, &body, &seen()).unwrap();
        let twice: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            twice["rules"], once["rules"],
            "the real write carries what the dry run saw"
        );
        // A JSON body is left byte for byte.
        let json = Bytes::from_static(br#"{"kind":"Role"}"#);
        assert_eq!(
            prepare(&mut headers("application/yaml"), json.clone()).unwrap(),
            json
        );
    }

    #[test]
    fn json_patches_test_the_object_first() {
        let (_, v) = held(
            "application/json-patch+json",
            r#"[{"op":"add","path":"/rules/-","value":{}}]"#,
        );
        assert_eq!(
            v,
            json!([
                {"op": "test", "path": "/metadata/uid", "value": "u-1"},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/rules/-", "value": {}},
            ])
        );
    }

    #[test]
    fn what_cannot_be_rewritten_is_refused() {
        for ct in HELD {
            assert_eq!(supported(&headers(ct)), Ok(()), "{ct}");
        }
        for ct in [
            "application/vnd.kubernetes.protobuf",
            "application/cbor",
            "text/plain",
        ] {
            assert!(supported(&headers(ct)).is_err(), "{ct}");
        }
        let mut h = headers("application/vnd.kubernetes.protobuf");
        assert!(matches!(
            hold_to(&mut h, b"k8s\x00", &seen()),
            Err(PreconditionError::Unsupported(m)) if m == "application/vnd.kubernetes.protobuf"
        ));
        for (ct, body) in [
            ("application/json", "[1]"),
            ("application/json", "{"),
            ("application/json", r#"{"metadata":"x"}"#),
            ("application/json-patch+json", "{}"),
            ("application/yaml", "a: [\n"),
        ] {
            assert!(
                hold_to(&mut headers(ct), body.as_bytes(), &seen()).is_err(),
                "{ct} {body}"
            );
        }
    }

    #[test]
    fn a_dry_run_without_uid_or_version_holds_nothing() {
        assert_eq!(
            Seen::of(&json!({"metadata": {"uid": "u", "resourceVersion": "1"}})),
            Ok(Seen {
                uid: "u".into(),
                resource_version: "1".into()
            })
        );
        assert_eq!(
            Seen::of(&json!({"metadata": {"uid": "u"}})),
            Err(PreconditionError::NoVersion)
        );
        assert_eq!(
            Seen::of(&json!({"kind": "Status"})),
            Err(PreconditionError::NoVersion)
        );
    }
}
