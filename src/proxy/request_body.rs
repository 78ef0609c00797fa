//! The request bodies the proxy reads itself, each bounded in size and time: a checked write
//! (sent twice), a self-review, and the small JSON bodies copied into audit events. Everything
//! else streams through untouched.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use crate::{
    audit::webhook::{
        OMITTED_CREDENTIALS, OMITTED_TOO_LARGE, carries_credentials, omitted_body, precheck_body,
        request_body_field,
    },
    authz::request_info::RequestInfo,
    cluster::upstream::UpBody,
};

/// Why a body the proxy had to read could not be.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("the request body could not be read")]
    Failed,
}

/// The `request_body` field of an audit event and why it was left out, if it was.
pub type AuditBody = (serde_json::Value, Option<&'static str>);

/// Reads a whole body, at most `limit` bytes and within `deadline`.
pub async fn read_body(body: Incoming, limit: usize, deadline: Duration) -> Result<Bytes, BodyError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(deadline, collect).await {
        Err(_) => Err(BodyError::Timeout(deadline)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(_)) => Err(BodyError::Failed),
    }
}

/// The audit field of a body already read whole.
pub fn audit_field(headers: &HeaderMap, info: &RequestInfo, bytes: &[u8], limit: usize) -> AuditBody {
    if carries_credentials(info) {
        return omitted_body(OMITTED_CREDENTIALS);
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    request_body_field(ct, bytes, limit)
}

/// Reads a small JSON body for the audit event; returns the body to send upstream and the
/// audit field. Only bodies whose length is announced and small are read: a chunked upload of
/// unknown size streams through, so the proxy never holds more than `limit`.
pub async fn for_audit(
    headers: &HeaderMap,
    body: Incoming,
    info: &RequestInfo,
    limit: usize,
    deadline: Duration,
) -> Result<(UpBody, AuditBody), BodyError> {
    if carries_credentials(info) {
        return Ok((Either::Left(body), omitted_body(OMITTED_CREDENTIALS)));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let skip = match length {
        None => Some(OMITTED_TOO_LARGE),
        Some(0) => None,
        Some(_) => precheck_body(content_type, length, limit),
    };
    if let Some(reason) = skip {
        return Ok((Either::Left(body), omitted_body(reason)));
    }
    let bytes = read_body(body, limit.max(1), deadline).await?;
    let field = audit_field(headers, info, &bytes, limit);
    Ok((Either::Right(Full::new(bytes)), field))
}
