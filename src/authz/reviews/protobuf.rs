//! kubectl sends self-reviews as Kubernetes protobuf (`application/vnd.kubernetes.protobuf`).
//! The proxy reads the few fields a self-review has and turns them into the JSON form the rest
//! of this module understands; answers always go back as JSON, which kubectl also accepts.
//!
//! Wire format: the 4 bytes `k8s\0`, then a `runtime.Unknown` {1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw object}. In the object, field 2 is the spec (field numbers from
//! k8s.io/api authorization/v1 generated.proto).

use serde_json::{Map, Value, json};

use super::{ReviewError, SelfReview};

const MAGIC: &[u8] = b"k8s\0";

/// One protobuf field: its number and, for length-delimited fields, the bytes.
struct Field<'a> {
    number: u64,
    bytes: Option<&'a [u8]>,
}

fn bad(what: &str) -> ReviewError {
    ReviewError::BadRequest(format!("the protobuf body is not valid: {what}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ReviewError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

/// The fields of one message, in order; unknown wire types are refused.
fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, ReviewError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let number = key >> 3;
        match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
                out.push(Field { number, bytes: None });
            }
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|p| *p <= buf.len())
                    .ok_or_else(|| bad("truncated fixed64"))?
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push(Field {
                    number,
                    bytes: Some(&buf[pos..end]),
                });
                pos = end;
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|p| *p <= buf.len())
                    .ok_or_else(|| bad("truncated fixed32"))?
            }
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn message(buf: &[u8], number: u64) -> Result<Option<&[u8]>, ReviewError> {
    Ok(fields(buf)?
        .into_iter()
        .rev()
        .find(|f| f.number == number)
        .and_then(|f| f.bytes))
}

/// String fields of a message, by JSON name.
fn strings(buf: &[u8], names: &[(u64, &str)]) -> Result<Map<String, Value>, ReviewError> {
    let mut map = Map::new();
    for f in fields(buf)? {
        if let (Some((_, name)), Some(bytes)) = (names.iter().find(|(n, _)| *n == f.number), f.bytes) {
            let s = std::str::from_utf8(bytes).map_err(|_| bad("string is not UTF-8"))?;
            map.insert((*name).to_string(), Value::String(s.to_string()));
        }
    }
    Ok(map)
}

pub fn is_protobuf(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.trim().starts_with("application/vnd.kubernetes.protobuf"))
}

/// The JSON equivalent of a protobuf self-review body.
pub fn to_json(kind: SelfReview, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing k8s envelope"))?;
    let type_meta = message(unknown, 1)?.unwrap_or_default();
    let tm = strings(type_meta, &[(1, "apiVersion"), (2, "kind")])?;
    let raw = message(unknown, 2)?.unwrap_or_default();
    let spec_bytes = message(raw, 2)?.unwrap_or_default();
    let spec = match kind {
        SelfReview::AccessReview => {
            let mut spec = Map::new();
            if let Some(ra) = message(spec_bytes, 1)? {
                let attrs = strings(
                    ra,
                    &[
                        (1, "namespace"),
                        (2, "verb"),
                        (3, "group"),
                        (4, "version"),
                        (5, "resource"),
                        (6, "subresource"),
                        (7, "name"),
                    ],
                )?;
                spec.insert("resourceAttributes".into(), Value::Object(attrs));
            }
            if let Some(nra) = message(spec_bytes, 2)? {
                spec.insert(
                    "nonResourceAttributes".into(),
                    Value::Object(strings(nra, &[(1, "path"), (2, "verb")])?),
                );
            }
            Value::Object(spec)
        }
        SelfReview::RulesReview => Value::Object(strings(spec_bytes, &[(1, "namespace")])?),
        SelfReview::SubjectReview => json!({}),
    };
    let mut doc = json!({ "spec": spec });
    for (k, v) in tm {
        doc[k] = v;
    }
    serde_json::to_vec(&doc).map_err(|e| ReviewError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    /// What kubectl sends for `kubectl auth can-i create pods/exec -n dev`.
    fn access_review() -> Vec<u8> {
        let attrs = [
            field(1, b"dev"),
            field(2, b"create"),
            field(5, b"pods"),
            field(6, b"exec"),
        ]
        .concat();
        let spec = field(1, &attrs);
        let raw = [field(1, b""), field(2, &spec)].concat();
        let tm = [
            field(1, b"authorization.k8s.io/v1"),
            field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        [MAGIC.to_vec(), field(1, &tm), field(2, &raw), field(4, b"")].concat()
    }

    #[test]
    fn access_review_becomes_json() {
        let json: Value =
            serde_json::from_slice(&to_json(SelfReview::AccessReview, &access_review()).unwrap()).unwrap();
        assert_eq!(
            json,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": {"namespace": "dev", "verb": "create", "resource": "pods", "subresource": "exec"}}})
        );
    }

    #[test]
    fn rules_review_and_whoami() {
        let raw = field(2, &field(1, b"dev"));
        let body = [MAGIC.to_vec(), field(2, &raw)].concat();
        let json: Value = serde_json::from_slice(&to_json(SelfReview::RulesReview, &body).unwrap()).unwrap();
        assert_eq!(json["spec"]["namespace"], "dev");
        let body = [MAGIC.to_vec(), field(2, &field(1, b""))].concat();
        assert!(to_json(SelfReview::SubjectReview, &body).is_ok());
    }

    #[test]
    fn garbage_is_a_bad_request_not_a_panic() {
        for body in [
            &b""[..],
            b"k8s",
            b"k8s\0\x0a\xff",
            b"k8s\0\x0a\x05ab",
            b"k8s\0\x17",
            b"{\"json\":1}",
        ] {
            assert!(to_json(SelfReview::AccessReview, body).is_err(), "{body:?}");
        }
    }
}
