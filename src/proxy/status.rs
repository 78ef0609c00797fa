//! Kubernetes `Status` responses, so kubectl prints a sensible message for every refusal.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};
use serde_json::json;

use super::ProxyBody;
use crate::authz::{forbidden::forbidden_message, request_info::RequestInfo};

/// Builds a `Status` (kind Status, apiVersion v1, status Failure) with the given code.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<ProxyBody> {
    status_with_details(code, reason, message, None)
}

pub fn status_with_details(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Response<ProxyBody> {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(bytes))));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// The one answer any unauthenticated request gets: nothing about why.
pub fn unauthorized() -> Response<ProxyBody> {
    let mut resp = status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

pub fn unknown_cluster(name: &str) -> Response<ProxyBody> {
    status_with_details(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("cluster {name:?} is not served by this proxy"),
        Some(json!({"name": name, "kind": "clusters"})),
    )
}

/// The 403 kube-apiserver would give, word for word, so scripts and users see the same thing.
pub fn forbidden(user: &str, info: &RequestInfo) -> Response<ProxyBody> {
    let details = if info.is_resource_request {
        let mut d = serde_json::json!({ "kind": info.resource });
        if !info.api_group.is_empty() {
            d["group"] = info.api_group.as_str().into();
        }
        if !info.name.is_empty() {
            d["name"] = info.name.as_str().into();
        }
        Some(d)
    } else {
        None
    };
    status_with_details(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &forbidden_message(user, info),
        details,
    )
}
